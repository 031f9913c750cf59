"""Running a command under ``torchrun --standalone`` from a test: 2 gloo ranks, one thread each, and one
retry when the standalone rendezvous port was taken meanwhile (a busy machine)."""
import os
import re
import shutil
import subprocess
import sys

#: What torchrun prints when its standalone rendezvous port was taken meanwhile.
TRANSIENT_RENDEZVOUS = re.compile(r"address already in use|EADDRINUSE|RendezvousConnectionError|"
                                  r"The server socket has failed to listen", re.IGNORECASE)


def torchrun(*args, processes: int = 2, clean=None, timeout: int = 240, env=None) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --standalone --nproc_per_node N ARGS``; ``clean`` is a folder
    removed before the retry (the first attempt may have started writing it)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 and TRANSIENT_RENDEZVOUS.search(done.stdout + done.stderr):
        if clean is not None:
            shutil.rmtree(clean, ignore_errors=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return done
