"""Package, check, deploy, invoke, watch and remove the ECG model on SageMaker Serverless Inference.

One command line tool (run ``python deploy_model.py --help``)::

    package    build/model + model_code/ -> sagemaker_models/<model_version>_sagemaker.tar.gz
    check      validate any such archive (members, paths, config vs weights, a smoke prediction)
    preflight  credentials, execution role, bucket, serverless concurrency quota
    deploy     package, check, upload, Model, EndpointConfig (ServerlessConfig), create or update
    invoke     score an ECG file on an endpoint (name or runtime URL)
    status     endpoint state, memory, concurrency, model version, CloudWatch figures
    logs       CloudWatch log lines of the endpoint (--since, --follow)
    delete     the endpoint, its configs and the models this tool created (found by tag)

AWS credentials, region and endpoints come only from boto3's standard configuration
(profiles, environment variables such as ``AWS_PROFILE``, ``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL``, instance roles). The SageMaker execution role comes from ``--role`` or
``SAGEMAKER_ROLE_ARN``. The code lives in ``ecg_scorer/deploy/``; this file is its entry.
"""

import sys

from ecg_scorer.deploy.cli import main

if __name__ == "__main__":
    sys.exit(main())
