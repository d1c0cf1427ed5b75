"""Stages that run for real in localhost/procjob:dev (python inside): small programs, their outputs
written through the worker contract's termination message."""

from __future__ import annotations

from typing import Any

IMAGE = "localhost/procjob:dev"

# Writes the JSON object in $OUTPUTS (templated by the operator) as the stage's outputs.
WRITE_OUTPUTS = """
import json, os
json.dump(json.loads(os.environ["OUTPUTS"]), open(os.environ["PROCJOB_TERMINATION_MESSAGE_PATH"], "w"))
"""

# Runs for $SLEEP seconds; on SIGTERM, tells the test's HTTP server ($REPORT_URL) and exits 143. The
# request log of the server is how a test sees that a real container got the signal.
SIGNAL_REPORTER = """
import os, signal, sys, time, urllib.request
def report(signum, frame):
    query = "?signal=TERM&job=%s&attempt=%s" % (os.environ["PROCJOB_JOB_NAME"], os.environ["PROCJOB_ATTEMPT"])
    urllib.request.urlopen(os.environ["REPORT_URL"] + query, timeout=5).read()
    sys.exit(143)
signal.signal(signal.SIGTERM, report)
print("running, attempt", os.environ["PROCJOB_ATTEMPT"], flush=True)
time.sleep(float(os.environ.get("SLEEP", "300")))
"""

# What the kernel says about this process: the restricted security context in force, or not.
INTROSPECT = """
import json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line)
try:
    open("/probe", "w").close()
    root_writable = True
except OSError:
    root_writable = False
open("/tmp/probe", "w").close()
out = {"uid": os.getuid(), "gid": os.getgid(), "capEff": status["CapEff"].strip(),
       "noNewPrivs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
       "rootWritable": root_writable}
json.dump(out, open(os.environ["PROCJOB_TERMINATION_MESSAGE_PATH"], "w"))
print(json.dumps(out))
"""


def python_stage(name: str, program: str, **extra: Any) -> dict[str, Any]:
    """A stage running `program` with the image's python."""
    return {"name": name, "image": IMAGE, "imagePullPolicy": "Never", "command": ["python", "-c", program], **extra}


def env(**values: str) -> list[dict[str, str]]:
    return [{"name": k, "value": v} for k, v in values.items()]


def job(name: str, *stages: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "procjob.dev/v1alpha1", "kind": "ProcessingJob", "metadata": {"name": name},
            "spec": {"stages": list(stages), **spec}}  # fmt: skip


def stage_status(body: dict[str, Any], name: str) -> dict[str, Any]:
    return next(dict(s) for s in body["status"]["stages"] if s["name"] == name)


def reason(body: dict[str, Any]) -> str:
    return str(next(c for c in body["status"]["conditions"] if c["type"] == "Succeeded")["reason"])


# Reports SIGTERM, keeps running through the grace period (reporting once more a second later), and is
# SIGKILLed by the kubelet when the grace period ends.
SIGTERM_IGNORER = """
import os, signal, time, urllib.request
def ping(what):
    query = "?signal=%s&job=%s" % (what, os.environ["PROCJOB_JOB_NAME"])
    urllib.request.urlopen(os.environ["REPORT_URL"] + query, timeout=5).read()
def ignore(signum, frame):
    ping("TERM-ignored")
    time.sleep(1)
    ping("alive-after-TERM")
signal.signal(signal.SIGTERM, ignore)
print("running; SIGTERM will be ignored", flush=True)
while True:
    time.sleep(1)
"""
