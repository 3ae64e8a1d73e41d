"""The model container's entrypoint, run by the serving venv's Python (by path, not imported).

It does what SageMaker's PyTorch inference image does at start,
``sagemaker_pytorch_serving_container.serving.main()``: write TorchServe's configuration, start
TorchServe on ``$SAGEMAKER_BASE_DIR/model`` with the toolkit's handler service, and wait for it.
Two things differ, so that it runs without root and beside other model servers on one machine:

- the toolkit writes its TorchServe configuration to ``/etc/sagemaker-ts.properties``; here it
  goes to ``$LOCAL_TS_CONFIG_FILE`` (the stack's folder);
- the toolkit waits on "the" TorchServe process of the machine and gives up when it finds
  several; here it waits on the one in its own session (the stack starts each in its own).

Everything else comes from the environment the stack sets, as in the container: ports and
addresses (``SAGEMAKER_BIND_TO_PORT``, ``TS_*_ADDRESS``), workers, ``TEMP``, ``LOG_LOCATION``.
It stops with its parent: when the stack that started it is gone, it ends its session.
Standard library and the serving venv's packages only: this file never imports ecg_scorer.
"""

import os
import signal
import sys
import threading
import time


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os.killpg(0, signal.SIGTERM)  # TorchServe and its workers share this session's group


def main() -> None:
    import psutil
    from retrying import retry
    from sagemaker_pytorch_serving_container import serving, torchserve

    torchserve.TS_CONFIG_FILE = os.environ["LOCAL_TS_CONFIG_FILE"]
    session = os.getsid(0)

    @retry(stop_max_delay=10 * 1000)  # as long as the toolkit's own lookup waits
    def own_torchserve() -> psutil.Process:
        for process in psutil.process_iter():
            try:
                if (
                    process.status() != psutil.STATUS_ZOMBIE
                    and torchserve.TS_NAMESPACE in process.cmdline()
                    and os.getsid(process.pid) == session
                ):
                    return process
            except (psutil.Error, OSError):
                continue
        raise RuntimeError("TorchServe did not start")

    torchserve._retrieve_ts_server_process = own_torchserve
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    serving.main()


if __name__ == "__main__":
    main()
    sys.exit(0)
