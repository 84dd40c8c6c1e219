"""Drives a real `chromatune` kernel with jupyter_client, for test/kernel.test.ts.

stdin: JSON list of batches; a batch is a list of execute requests ({"code", "stop_on_error"}) sent
at once, without waiting for replies (as a frontend's "run all" does). stdout: JSON, per batch and
request, the execute_reply content and the iopub messages (msg_type, content) it caused.
"""
import json
import sys
from queue import Empty

from jupyter_client.manager import start_new_kernel

TIMEOUT = 30


def run_batch(kc, batch):
    ids = [kc.execute(r["code"], stop_on_error=r.get("stop_on_error", True)) for r in batch]
    replies, outputs, idle = {}, {i: [] for i in ids}, set()
    while len(replies) < len(ids):
        msg = kc.get_shell_msg(timeout=TIMEOUT)
        if msg["parent_header"].get("msg_id") in outputs:  # not a left-over kernel_info_reply
            replies[msg["parent_header"]["msg_id"]] = msg["content"]
    while idle != set(ids):
        try:
            msg = kc.get_iopub_msg(timeout=TIMEOUT)
        except Empty:
            break
        parent = msg["parent_header"].get("msg_id")
        if parent not in outputs:
            continue
        if msg["msg_type"] == "status":
            if msg["content"]["execution_state"] == "idle":
                idle.add(parent)
            continue
        outputs[parent].append({"msg_type": msg["msg_type"], "content": msg["content"]})
    return [{"reply": replies[i], "iopub": outputs[i]} for i in ids]


def main():
    batches = json.load(sys.stdin)
    km, kc = start_new_kernel(kernel_name="chromatune", startup_timeout=60)
    try:
        results = [run_batch(kc, b) for b in batches]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)
    json.dump(results, sys.stdout, default=str)


if __name__ == "__main__":
    main()
