"""The local stack: the whole pipeline on one machine, with no AWS account.

moto's server stands in for S3, SQS and DynamoDB (`stack`), a small HTTP server speaks the
SageMaker runtime ``InvokeEndpoint`` API over the real ``model_code/inference.py``
(`endpoint`), and a poller hands SQS batches to the unchanged Lambda handler (`poller`).
`demo` runs it end to end (``make demo``) or leaves it running (``make local-up``).
"""
