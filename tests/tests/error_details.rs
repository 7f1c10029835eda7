//! Every error carries google.rpc.ErrorInfo with a stable reason, so a form or a batch job can
//! tell a mistyped number from a missing grant without parsing English.

use tonic::Code;
use tonic_types::StatusExt;
use vault_client::pb;
use vault_tests::Daemon;
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{seal_request, unseal};

const W: &str = "STAFF_WITHHOLDING";
const H: &str = "STAFF_HEALTH_PENSION";

fn reason(status: &tonic::Status) -> (Code, String, String) {
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    (status.code(), info.reason, info.domain)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_a_stable_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut handler = daemon.dev_client("dev-handler").await;
    let mut manager = daemon.dev_client("dev-manager").await;

    let good = valid_number(5);
    let bad_digit = format!("{}{}", &good[..11], (good.as_bytes()[11] - b'0' + 1) % 10);
    for (number, want) in [
        (bad_digit.as_str(), "CHECK_DIGIT_MISMATCH"),
        ("12345678901", "WRONG_LENGTH"),
        ("1234567890１a", "INVALID_CHARACTER"),
    ] {
        let status = handler
            .locker
            .seal(seal_request("dev", "E1", number, &[W]))
            .await
            .expect_err("bad number");
        assert_eq!(
            reason(&status),
            (
                Code::InvalidArgument,
                want.to_owned(),
                "mynumber-locker".to_owned()
            ),
            "{number}"
        );
    }
    let status = handler
        .locker
        .seal(seal_request("dev", "E1", &good, &["MARKETING"]))
        .await
        .expect_err("unknown purpose");
    assert_eq!(reason(&status).1, "PURPOSE_UNKNOWN");

    let only_w = handler
        .locker
        .seal(seal_request("dev", "E2", &good, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;
    assert_eq!(
        reason(&unseal(&mut handler, &only_w, H).await.expect_err("refused")).1,
        "PURPOSE_NOT_ON_RECORD"
    );
    assert_eq!(
        reason(
            &unseal(&mut handler, "mnh_nope", W)
                .await
                .expect_err("refused")
        )
        .0,
        Code::InvalidArgument
    );

    manager
        .locker
        .suspend(pb::SuspendRequest {
            handle: only_w.clone(),
            reason: "本人の求め".into(),
        })
        .await
        .expect("suspend");
    assert_eq!(
        reason(&unseal(&mut handler, &only_w, W).await.expect_err("refused")),
        (
            Code::FailedPrecondition,
            "RECORD_SUSPENDED".into(),
            "mynumber-locker".into()
        )
    );
    manager
        .locker
        .dispose(pb::DisposeRequest {
            handle: only_w.clone(),
            reason: "保存期間経過".into(),
        })
        .await
        .expect("dispose");
    assert_eq!(
        reason(&unseal(&mut handler, &only_w, W).await.expect_err("refused")).1,
        "RECORD_DISPOSED"
    );

    // Without a token, with a token that is not one: each says which.
    let mut anonymous = daemon.client(None).await;
    assert_eq!(
        reason(
            &unseal(&mut anonymous, &only_w, W)
                .await
                .expect_err("refused")
        ),
        (
            Code::Unauthenticated,
            "TOKEN_MISSING".into(),
            "mynumber-locker".into()
        )
    );
    let mut garbled = daemon.client(Some("not-a-token".to_owned().into())).await;
    assert_eq!(
        reason(&unseal(&mut garbled, &only_w, W).await.expect_err("refused")).1,
        "TOKEN_MALFORMED"
    );

    // A handle that does not exist: the code's own name, nothing more.
    let missing = format!("mnh_{}", "0".repeat(32));
    assert_eq!(
        reason(
            &unseal(&mut handler, &missing, W)
                .await
                .expect_err("refused")
        ),
        (Code::NotFound, "NOT_FOUND".into(), "mynumber-locker".into())
    );
}

/// What other stacks trip on: the scheme in another case, spaces around the token, and
/// reflection for tools that speak only v1alpha (grpcurl 1.8, grpcio-reflection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_stacks_find_the_schema_and_authenticate_as_they_send() {
    use secrecy::ExposeSecret;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let channel = tonic::transport::Channel::from_shared(daemon.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");

    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let answer = answers
        .message()
        .await
        .expect("answer")
        .expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("{answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"mynumber.locker.v1.Locker"), "{names:?}");
    assert!(names.contains(&"mynumber.locker.v1.Admin"), "{names:?}");

    let token = daemon.dev_token("dev-handler");
    let mut locker = pb::locker_client::LockerClient::new(channel);
    for header in [
        format!("bearer {}", token.expose_secret()),
        format!("BEARER   {}  ", token.expose_secret()),
        format!("Bearer\t{}", token.expose_secret()),
    ] {
        // An unknown handle answers NOT_FOUND only once the token was accepted.
        let mut describe = tonic::Request::new(pb::DescribeRequest {
            handle: format!("mnh_{}", "0".repeat(32)),
        });
        describe
            .metadata_mut()
            .insert("authorization", header.parse().expect("header"));
        let status = locker.describe(describe).await.expect_err("no such record");
        assert_eq!(
            status.code(),
            Code::NotFound,
            "{header:?} accepted: {status:?}"
        );
    }
    let mut wrong = tonic::Request::new(pb::DescribeRequest {
        handle: format!("mnh_{}", "0".repeat(32)),
    });
    wrong.metadata_mut().insert(
        "authorization",
        format!("Bearertoken{}", token.expose_secret())
            .parse()
            .expect("header"),
    );
    let status = locker.describe(wrong).await.expect_err("no scheme");
    assert_eq!(status.code(), Code::Unauthenticated);
}
