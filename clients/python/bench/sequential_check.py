"""Sequential Check latency through the Python client: one channel, one
call at a time after a warm-up, as a module checking its users' requests
does. Run by plinth-bench, which reports it beside grpcurl's and tonic's;
prints {"calls": N, "p50_us": ..., "p99_us": ...}.

Environment: PLINTH_TARGET (host:port, plaintext), PLINTH_API_KEY; the
check is given by --tenant, --user, --company and --permission.
"""

import argparse
import json
import os
import time

import plinth_client
from plinth.rbac.v1 import rbac_pb2, rbac_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("tenant", "user", "company", "permission"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warm-up", type=int, default=200)
    args = parser.parse_args()
    channel = plinth_client.connect(os.environ["PLINTH_TARGET"], api_key=os.environ["PLINTH_API_KEY"])
    rbac = rbac_pb2_grpc.RbacServiceStub(channel)
    request = rbac_pb2.CheckRequest(
        tenant_id=args.tenant, user_id=args.user, company_id=args.company, permission=args.permission
    )
    for _ in range(args.warm_up):
        rbac.Check(request, timeout=5)
    micros = []
    for _ in range(args.calls):
        started = time.perf_counter_ns()
        rbac.Check(request, timeout=5)
        micros.append((time.perf_counter_ns() - started) // 1000)
    micros.sort()
    print(
        json.dumps(
            {
                "calls": len(micros),
                "p50_us": micros[len(micros) // 2],
                "p99_us": micros[min(len(micros) - 1, len(micros) * 99 // 100)],
            }
        )
    )


if __name__ == "__main__":
    main()
