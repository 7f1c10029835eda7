"""A small payroll system on MyNumber Locker, in Python with grpcio.

It does what a payroll office does with individual numbers (個人番号):

* at hiring, seal each employee's number and keep only the handle (取得);
* for the 源泉徴収票, unseal a number with the purpose STAFF_WITHHOLDING (利用);
* at year end, unseal every employee's number in one UnsealBatch stream, sending items as
  grpcio asks for them and reading results as they come (flow control on both sides);
* act on errors by their google.rpc.ErrorInfo reason, never by parsing English.

Usage:
    payroll.py --stubs DIR --endpoint HOST:PORT --token-file FILE --tenant T \
               --employees FILE.csv [--year-end-rounds N] [--ca PEM]

FILE.csv holds `employee_id,number` rows. The program prints one JSON object that says what
happened, and never a number. Stubs are generated from the locker's proto/ with
`python -m grpc_tools.protoc` (see README.md).
"""

import argparse
import csv
import json
import sys
import time

WITHHOLDING = "STAFF_WITHHOLDING"  # 規程第4条 1-④ 源泉徴収票作成事務
HEALTH = "STAFF_HEALTH_PENSION"  # 健康保険・厚生年金保険届出事務


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stubs", required=True, help="directory of the generated stubs")
    parser.add_argument("--endpoint", required=True, help="host:port of the locker")
    parser.add_argument("--token-file", required=True, help="the service operator's token")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--employees", required=True, help="CSV of employee_id,number")
    parser.add_argument("--year-end-rounds", type=int, default=1,
                        help="unseal every employee this many times in the year-end stream")
    parser.add_argument("--ca", help="CA certificate (PEM) when the locker serves TLS")
    return parser.parse_args()


class Locker:
    """The locker's API as a payroll system uses it."""

    def __init__(self, args):
        import grpc
        from mynumber.locker.v1 import locker_pb2, locker_pb2_grpc

        self.grpc = grpc
        self.pb = locker_pb2
        # A token file ends with a newline: grpcio refuses metadata with a line break
        # ("Invalid metadata"), so strip it.
        with open(args.token_file, encoding="utf-8") as f:
            token = f.read().strip()
        self.metadata = (("authorization", f"Bearer {token}"),)
        if args.ca:
            with open(args.ca, "rb") as f:
                credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
            self.channel = grpc.secure_channel(args.endpoint, credentials)
        else:
            self.channel = grpc.insecure_channel(args.endpoint)
        self.stub = locker_pb2_grpc.LockerStub(self.channel)
        self.tenant = args.tenant

    def hire(self, employee_id, number, purposes):
        """Seals an employee's number; returns (handle, what the held record lacks)."""
        response = self.call(
            self.stub.Seal,
            self.pb.SealRequest(
                tenant=self.tenant,
                subject_ref=employee_id,
                subject_kind=self.pb.SUBJECT_KIND_STAFF,
                purposes=purposes,
                number=number,
                verification=self.pb.IdentityVerification(
                    number_check="MNC", identity_check="MNC"),
            ),
        )
        lacking = list(response.purposes_not_on_record) if response.existing else []
        return response.handle, lacking

    def add_purposes(self, handle, purposes):
        """Adds purposes to an employee's record (e.g. 健康保険 after the trial period)."""
        return self.call(self.stub.AddPurposes,
                         self.pb.AddPurposesRequest(handle=handle, purposes=purposes))

    def withholding_number(self, handle):
        """The number for a 源泉徴収票."""
        return self.call(self.stub.Unseal,
                         self.pb.UnsealRequest(handle=handle, purpose=WITHHOLDING)).number

    def year_end(self, handles):
        """Unseals every handle in one stream; yields (handle, number or None, reason).

        `handles` may be a generator: grpcio pulls requests from it only as HTTP/2 flow control
        lets them go, and the locker reads ahead of its results, so neither side holds the whole
        run in memory. Results come back in the order of the requests.
        """
        def requests():
            for handle in handles:
                yield self.pb.UnsealRequest(handle=handle, purpose=WITHHOLDING)

        for result in self.stub.UnsealBatch(requests(), metadata=self.metadata):
            if result.HasField("error"):
                yield result.handle, None, result.error.reason
            else:
                yield result.handle, result.number, ""

    def call(self, method, request, attempts=5):
        """One unary call; a rate-limited call waits as RetryInfo says and tries again."""
        for _ in range(attempts):
            try:
                return method(request, metadata=self.metadata)
            except self.grpc.RpcError as error:
                reason, retry_after = error_details(error)
                if reason != "RATE_LIMITED" or retry_after is None:
                    raise LockerError(error.code(), reason, error.details()) from None
                time.sleep(retry_after)
        raise LockerError(None, "RATE_LIMITED", "still rate limited")


class LockerError(Exception):
    """A refused call: the gRPC status code and the stable ErrorInfo reason."""

    def __init__(self, code, reason, message):
        super().__init__(f"{code}: {reason}: {message}")
        self.code = code
        self.reason = reason


def error_details(error):
    """(ErrorInfo reason, RetryInfo delay in seconds or None) of a failed call."""
    from grpc_status import rpc_status
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    reason, retry_after = error.code().name, None
    if status is None:
        return reason, retry_after
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    return reason, retry_after


# What a form shows for each reason: the program acts on the reason, the person reads this.
FORM_MESSAGES = {
    "CHECK_DIGIT_MISMATCH": "個人番号のチェックデジットが一致しません。番号をご確認ください。",
    "WRONG_LENGTH": "個人番号は12桁です。",
    "INVALID_CHARACTER": "個人番号には数字のみ入力してください。",
    "PURPOSE_NOT_ON_RECORD": "この利用目的では利用できません（利用目的の追加が必要です）。",
    "PURPOSE_NOT_GRANTED": "この利用目的の権限がありません。",
    "RECORD_SUSPENDED": "本人の求めにより利用停止中です。",
}


def list_services(channel):
    """The services the locker serves, through v1alpha reflection (grpcio-reflection)."""
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())


def main():
    args = parse_args()
    sys.path.insert(0, args.stubs)
    locker = Locker(args)
    report = {"services": list_services(locker.channel)}

    with open(args.employees, encoding="utf-8-sig", newline="") as f:
        employees = [(row[0], row[1]) for row in csv.reader(f) if row]

    # Hiring: keep the handle, never the number.
    handles, numbers = {}, {}
    for employee_id, number in employees:
        handle, _ = locker.hire(employee_id, number, [WITHHOLDING])
        handles[employee_id] = handle
        numbers[handle] = number  # kept here only to check what comes back
    report["hired"] = len(handles)

    # A mistyped number at the form: the reason says which message to show.
    employee_id, number = employees[0]
    mistyped = number[:11] + str((int(number[11]) + 1) % 10)
    try:
        locker.hire("NEW-1", mistyped, [WITHHOLDING])
        report["mistyped"] = "accepted"
    except LockerError as error:
        report["mistyped"] = error.reason
        report["form_message"] = FORM_MESSAGES.get(error.reason, "")

    # 源泉徴収票: the number for its purpose; another purpose is refused until added.
    first = handles[employee_id]
    report["withholding_matches"] = locker.withholding_number(first) == numbers[first]
    try:
        locker.call(locker.stub.Unseal,
                    locker.pb.UnsealRequest(handle=first, purpose=HEALTH))
        report["health_before_adding"] = "released"
    except LockerError as error:
        report["health_before_adding"] = error.reason
    # The employee joins 健康保険: sealing again says what the record lacks; add it.
    _, lacking = locker.hire(employee_id, number, [WITHHOLDING, HEALTH])
    report["reseal_lacks"] = lacking
    report["purposes_after_adding"] = list(locker.add_purposes(first, [HEALTH]).purposes)

    # Year end: every employee, `rounds` times, in one stream.
    def year_end_handles():
        for _ in range(args.year_end_rounds):
            yield from handles.values()

    ok = wrong = 0
    failures = {}
    for handle, number, reason in locker.year_end(year_end_handles()):
        if number is None:
            failures[reason] = failures.get(reason, 0) + 1
        elif number == numbers[handle]:
            ok += 1
        else:
            wrong += 1
    report["year_end"] = {"ok": ok, "wrong": wrong, "failed": failures}
    print(json.dumps(report, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
