"""A payroll system's year-end run, as a Python grpcio client would do it: seal a few records,
then stream UnsealBatch items and read every result on one channel.

Usage: batch_client.py STUBS_DIR ENDPOINT TOKEN_FILE TENANT ITEMS

Prints "batch ok: N results" and exits 0 when every item came back, in order, with its number;
exits 1 with the gRPC error otherwise. Stubs are generated from proto/ by the calling test.
"""

import sys


def check_digit(first11: str) -> int:
    # 平成26年総務省令第85号 第5条: Pn the n-th digit from the right, Qn = n+1 (n<=6) else n-5.
    total = 0
    for n, digit in enumerate(reversed(first11), start=1):
        q = n + 1 if n <= 6 else n - 5
        total += int(digit) * q
    r = total % 11
    return 0 if r <= 1 else 11 - r


def number(seed: int) -> str:
    first11 = f"{seed:011d}"
    return first11 + str(check_digit(first11))


def main() -> int:
    stubs, endpoint, token_file, tenant, items = sys.argv[1:6]
    sys.path.insert(0, stubs)
    import grpc
    from mynumber.locker.v1 import locker_pb2, locker_pb2_grpc

    token = open(token_file, encoding="utf-8").read().strip()
    metadata = (("authorization", f"Bearer {token}"),)
    channel = grpc.insecure_channel(endpoint)
    locker = locker_pb2_grpc.LockerStub(channel)

    records = []
    for i in range(10):
        value = number(31_000_000_000 + i)
        sealed = locker.Seal(
            locker_pb2.SealRequest(
                tenant=tenant,
                subject_ref=f"PY{i}",
                subject_kind=locker_pb2.SUBJECT_KIND_STAFF,
                purposes=["STAFF_WITHHOLDING"],
                number=value,
                verification=locker_pb2.IdentityVerification(
                    number_check="MNC", identity_check="MNC"
                ),
            ),
            metadata=metadata,
        )
        records.append((sealed.handle, value))

    count = int(items)

    def requests():
        for index in range(count):
            handle, _ = records[index % len(records)]
            yield locker_pb2.UnsealRequest(handle=handle, purpose="STAFF_WITHHOLDING")

    received = 0
    try:
        for result in locker.UnsealBatch(requests(), metadata=metadata):
            handle, value = records[received % len(records)]
            if result.index != received or result.handle != handle:
                print(f"out of order: item {result.index} where {received} was due")
                return 1
            if result.HasField("error") or result.number != value:
                print(f"item {received} failed: {result.error.code} {result.error.message}")
                return 1
            received += 1
    except grpc.RpcError as error:
        print(f"stream failed after {received} results: {error.code()} {error.details()}")
        return 1
    if received != count:
        print(f"only {received} of {count} results")
        return 1
    print(f"batch ok: {received} results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
