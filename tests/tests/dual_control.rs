//! Dual control, attacked as one admin would: no path gives a single admin a working unseal
//! token (a new operator, a token for an existing handler, a re-enabled handler, a grant, a
//! new admin); self-approval, approval by an admin created after the request, a second
//! approval by the same admin and approval of a denied or expired request are refused; once
//! another admin approves, the change works; a larger quorum needs that many approvers; key
//! destruction follows the same rules; every step is in the audit log; and the break-glass
//! recovery of an admin token works on the host and is audited.

use tonic::Code;
use vault_client::{Client, pb};
use vault_tests::numbers::valid_number;
use vault_tests::rpc::{approve, export_audit, seal_request, split_token, unseal};
use vault_tests::{Daemon, DaemonOptions};

const W: &str = "STAFF_WITHHOLDING";

async fn create(admin: &mut Client, id: &str, role: pb::Role) -> pb::ChangeRequest {
    let created = admin
        .admin
        .create_operator(pb::CreateOperatorRequest {
            operator_id: id.into(),
            role: role as i32,
            display_name: String::new(),
        })
        .await
        .expect("create operator")
        .into_inner();
    created.pending_request.expect("held for approval")
}

async fn issue(admin: &mut Client, operator: &str) -> pb::IssueTokenResponse {
    admin
        .admin
        .issue_token(pb::IssueTokenRequest {
            operator_id: operator.into(),
            ttl_seconds: 3600,
            cert_fingerprint: String::new(),
        })
        .await
        .expect("issue token")
        .into_inner()
}

fn token_for(operator: &str) -> pb::IssueTokenRequest {
    pb::IssueTokenRequest {
        operator_id: operator.into(),
        ttl_seconds: 3600,
        cert_fingerprint: String::new(),
    }
}

/// A share passed off as a token: `mns_<id>_<n>_<secret>` as `mnt_<id>_<secret>`.
fn dressed_as_token(share: &str) -> secrecy::SecretString {
    let mut parts = share.trim_start_matches("mns_").split('_');
    let (id, _, secret) = (parts.next(), parts.next(), parts.next());
    format!("mnt_{}_{}", id.expect("id"), secret.expect("secret")).into()
}

async fn approve_id(approver: &mut Client, id: &str) -> Result<pb::ChangeRequest, tonic::Status> {
    approver
        .admin
        .approve_change_request(pb::ChangeRequestIdRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_single_admin_obtains_an_unseal_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut a = daemon.dev_client("dev-admin").await;
    let mut b = daemon.dev_client("dev-admin2").await;
    let mut handler = daemon.dev_client("dev-handler").await;
    let number = valid_number(31);
    let handle = handler
        .locker
        .seal(seal_request("dev", "E31", &number, &[W]))
        .await
        .expect("seal")
        .into_inner()
        .handle;

    // Path 1: a new handler. Held; it cannot be granted or given a token before it exists.
    let rogue = create(&mut a, "rogue", pb::Role::Handler).await;
    assert_eq!(rogue.state, "pending");
    assert_eq!(rogue.required, 1);
    let status = a
        .admin
        .grant_purposes(pb::GrantRequest {
            operator_id: "rogue".into(),
            tenant: "dev".into(),
            purposes: vec![W.into()],
        })
        .await
        .expect_err("no such operator yet");
    // Refused, naming the request that must be approved first.
    let pending_creation = |status: &tonic::Status| {
        status.code() == Code::FailedPrecondition
            && status
                .message()
                .contains(&format!("(request {})", rogue.id))
    };
    assert!(pending_creation(&status), "{status:?}");
    let status = a
        .admin
        .issue_token(pb::IssueTokenRequest {
            operator_id: "rogue".into(),
            ttl_seconds: 60,
            cert_fingerprint: String::new(),
        })
        .await
        .expect_err("no such operator yet");
    assert!(pending_creation(&status), "{status:?}");

    // Self-approval is refused, whatever the request.
    let status = approve_id(&mut a, &rogue.id)
        .await
        .expect_err("self-approval");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("another admin"), "{status:?}");

    // Path 2: a second token for an existing handler. The requester gets only share 1; it
    // is no token, before the approval or after.
    let second = issue(&mut a, "dev-handler").await;
    assert!(second.token.is_empty(), "no whole token for the requester");
    let held = second.pending_request.clone().expect("held for approval");
    assert_eq!(held.kind, "issue_token");
    let share_secret = second.token_share.rsplit('_').next().expect("secret");
    assert!(
        !held.summary.contains(share_secret),
        "no secret in a request"
    );
    let mut stolen = daemon.client(Some(second.token_share.clone().into())).await;
    let mut dressed = daemon
        .client(Some(dressed_as_token(&second.token_share)))
        .await;
    for attempt in [&mut stolen, &mut dressed] {
        let status = unseal(attempt, &handle, W).await.expect_err("not a token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }

    // Path 3: a disabled handler re-enabled. Disabling is immediate; enabling is held.
    a.admin
        .disable_operator(pb::DisableOperatorRequest {
            operator_id: "dev-handler".into(),
        })
        .await
        .expect("disable");
    let enabled = a
        .admin
        .enable_operator(pb::DisableOperatorRequest {
            operator_id: "dev-handler".into(),
        })
        .await
        .expect("enable")
        .into_inner();
    assert!(enabled.disabled, "still disabled until approved");
    let status = unseal(&mut handler, &handle, W)
        .await
        .expect_err("disabled");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Path 4: a grant, to a handler both admins set up without one.
    approve(
        &mut b,
        Some(create(&mut a, "plain", pb::Role::Handler).await),
    )
    .await;
    let (_, plain_token) = split_token(&mut a, &mut b, token_for("plain")).await;
    let mut plain = daemon.client(Some(plain_token)).await;
    let granted = a
        .admin
        .grant_purposes(pb::GrantRequest {
            operator_id: "plain".into(),
            tenant: "dev".into(),
            purposes: vec![W.into()],
        })
        .await
        .expect("grant")
        .into_inner();
    assert!(granted.grants.is_empty(), "not granted until approved");
    let status = unseal(&mut plain, &handle, W).await.expect_err("no grant");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");

    // Path 5: a new admin, a sock puppet to approve the rest. Its creation is held too; once
    // the other admin lets it in, it still cannot approve what was asked before it existed.
    let puppet = create(&mut a, "puppet", pb::Role::Admin).await;
    approve(&mut b, Some(puppet)).await;
    let (_, puppet_token) = split_token(&mut a, &mut b, token_for("puppet")).await;
    let mut puppet = daemon.client(Some(puppet_token)).await;
    for id in [
        &held.id,
        &enabled.pending_request.as_ref().expect("held").id,
    ] {
        let status = approve_id(&mut puppet, id)
            .await
            .expect_err("an admin made after the request");
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert!(status.message().contains("after the request"), "{status:?}");
    }
    // Roles never change in place: the same id with another role is refused.
    let status = a
        .admin
        .create_operator(pb::CreateOperatorRequest {
            operator_id: "plain".into(),
            role: pb::Role::Admin as i32,
            display_name: String::new(),
        })
        .await
        .expect_err("exists");
    assert_eq!(status.code(), Code::AlreadyExists, "{status:?}");

    // A denied request cannot be approved afterwards.
    let denied = b
        .admin
        .deny_change_request(pb::DenyChangeRequestRequest {
            id: rogue.id.clone(),
            reason: "不要な担当者".into(),
        })
        .await
        .expect("deny")
        .into_inner();
    assert_eq!(denied.state, "denied");
    let status = approve_id(&mut b, &rogue.id).await.expect_err("denied");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");

    // The pending requests as another admin or an auditor sees them.
    let mut auditor = daemon.dev_client("dev-auditor").await;
    let listed = auditor
        .admin
        .list_change_requests(pb::ListChangeRequestsRequest { pending_only: true })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.quorum, 1);
    let pending: Vec<&str> = listed.requests.iter().map(|r| r.kind.as_str()).collect();
    for kind in ["issue_token", "enable_operator", "grant"] {
        assert!(pending.contains(&kind), "{kind} in {pending:?}");
    }
    assert!(!format!("{listed:?}").contains(share_secret));

    // A token for a disabled operator is not applied: enable it first.
    let status = approve_id(&mut b, &held.id).await.expect_err("disabled");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // Once the other admin approves, each change works, and each approval counts once. The
    // approver receives share 2; only the two shares combined are the token.
    approve(&mut b, enabled.pending_request).await;
    let applied = approve(&mut b, Some(held.clone())).await;
    assert!(applied.token_share.starts_with("mns_"), "{applied:?}");
    let status = approve_id(&mut b, &held.id).await.expect_err("applied");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    for attempt in [&mut stolen, &mut dressed] {
        let status = unseal(attempt, &handle, W).await.expect_err("one share");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let combined = vault_client::combine_token_shares(
        &second.token_share.clone().into(),
        &applied.token_share.clone().into(),
    )
    .expect("combine");
    let mut holder = daemon.client(Some(combined)).await;
    assert_eq!(
        unseal(&mut holder, &handle, W).await.expect("approved"),
        number
    );
    assert_eq!(
        unseal(&mut handler, &handle, W).await.expect("enabled"),
        number
    );
    approve(&mut b, granted.pending_request).await;
    assert_eq!(
        unseal(&mut plain, &handle, W).await.expect("granted"),
        number
    );

    // Every step is in the audit log, naming requester and approver, never a token.
    let entries = export_audit(&mut auditor).await;
    let text = format!("{entries:?}");
    assert!(!text.contains(share_secret));
    assert!(!text.contains(applied.token_share.rsplit('_').next().expect("secret")));
    let approvals: Vec<&pb::AuditEntry> = entries
        .iter()
        .filter(|e| e.action == "CHANGE_APPROVE")
        .collect();
    assert!(
        approvals.iter().any(|e| e.operator_id == "dev-admin2"
            && e.outcome == "ALLOWED"
            && e.reason.contains(&held.id)
            && e.reason.contains("by dev-admin")),
        "{approvals:?}"
    );
    assert!(
        approvals
            .iter()
            .any(|e| e.operator_id == "dev-admin" && e.outcome == "DENIED"),
        "the self-approval is audited: {approvals:?}"
    );
    assert!(
        approvals
            .iter()
            .any(|e| e.operator_id == "puppet" && e.outcome == "DENIED"),
        "the puppet's approval is audited: {approvals:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "CHANGE_DENY" && e.operator_id == "dev-admin2")
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "TOKEN_ISSUE" && e.reason.contains("awaits 1 approval"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_quorum_needs_that_many_older_admins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut a = daemon.dev_client("dev-admin").await;
    let mut b = daemon.dev_client("dev-admin2").await;

    // Two approvals need three admins: asked for with two, it cannot be applied.
    let quorum = a
        .admin
        .request_quorum(pb::RequestQuorumRequest { approvals: 2 })
        .await
        .expect("request quorum")
        .into_inner();
    assert_eq!((quorum.kind.as_str(), quorum.quorum), ("set_quorum", 2));
    let status = approve_id(&mut b, &quorum.id).await.expect_err("too few");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("at least 3"), "{status:?}");
    for zero in [0, 6] {
        let status = a
            .admin
            .request_quorum(pb::RequestQuorumRequest { approvals: zero })
            .await
            .expect_err("out of range");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    }

    // A third admin, then the quorum of two, each approved under the quorum of one.
    approve(
        &mut b,
        Some(create(&mut a, "admin-c", pb::Role::Admin).await),
    )
    .await;
    let (_, c_token) = split_token(&mut a, &mut b, token_for("admin-c")).await;
    let mut c = daemon.client(Some(c_token)).await;
    approve(&mut b, Some(quorum)).await;

    // Now one approval is not enough; a second admin's completes it.
    let request = create(&mut a, "h-quorum", pb::Role::Handler).await;
    assert_eq!(request.required, 2);
    let first = approve_id(&mut b, &request.id)
        .await
        .expect("first approval");
    assert_eq!(
        (first.state.as_str(), first.approved_by.len()),
        ("pending", 1)
    );
    let status = approve_id(&mut b, &request.id).await.expect_err("twice");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let second = approve_id(&mut c, &request.id)
        .await
        .expect("second approval");
    assert_eq!(second.state, "applied");
    assert_eq!(second.approved_by, ["dev-admin2", "admin-c"]);
    let operators = a
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .expect("list")
        .into_inner()
        .operators;
    assert!(operators.iter().any(|o| o.operator_id == "h-quorum"));

    // Key destruction follows the quorum and refuses an admin made after the request.
    a.admin
        .create_tenant(pb::CreateTenantRequest {
            tenant_id: "empty".into(),
            name: String::new(),
        })
        .await
        .expect("tenant");
    a.admin
        .rotate_tenant_keys(pb::RotateTenantKeysRequest {
            tenant: "empty".into(),
        })
        .await
        .expect("rotate");
    let destruction = a
        .admin
        .request_key_destruction(pb::RequestKeyDestructionRequest {
            tenant: "empty".into(),
            version: 1,
        })
        .await
        .expect("request destruction")
        .into_inner();
    let late = create(&mut a, "admin-late", pb::Role::Admin).await;
    approve_id(&mut b, &late.id).await.expect("first");
    approve(&mut c, Some(late)).await;
    let late_token = issue(&mut a, "admin-late").await;
    let first = approve_id(
        &mut b,
        &late_token.pending_request.as_ref().expect("held").id,
    )
    .await
    .expect("first");
    assert!(first.token_share.is_empty(), "no share before the quorum");
    let applied = approve(&mut c, late_token.pending_request.clone()).await;
    let late_token = vault_client::combine_token_shares(
        &late_token.token_share.into(),
        &applied.token_share.into(),
    )
    .expect("combine");
    let mut late = daemon.client(Some(late_token)).await;
    let approve_destruction = |id: String| pb::KeyDestructionIdRequest { id };
    let status = late
        .admin
        .approve_key_destruction(approve_destruction(destruction.id.clone()))
        .await
        .expect_err("made after the request");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let once = b
        .admin
        .approve_key_destruction(approve_destruction(destruction.id.clone()))
        .await
        .expect("first approval")
        .into_inner();
    assert_eq!(
        (once.state.as_str(), once.approved_by.as_str()),
        ("pending", "dev-admin2")
    );
    let twice = c
        .admin
        .approve_key_destruction(approve_destruction(destruction.id.clone()))
        .await
        .expect("second approval")
        .into_inner();
    assert_eq!(twice.state, "approved");
    assert_eq!(twice.approved_by, "dev-admin2,admin-c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (daemon, mut admin, mut approver) = vault_tests::rpc::start_from_config(
        &data,
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[store]\ndata_dir = \"{}\"\n[backend]\nallow_insecure = true\n[approvals]\nrequest_ttl_secs = 1\n",
            data.display()
        ),
        DaemonOptions::default(),
    )
    .await;
    let request = create(&mut admin, "slow", pb::Role::Auditor).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let status = approve_id(&mut approver, &request.id)
        .await
        .expect_err("expired");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("expired"), "{status:?}");
    let listed = approver
        .admin
        .list_change_requests(pb::ListChangeRequestsRequest::default())
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.requests[0].state, "expired");
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_mints_an_admin_token_on_the_host_and_is_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut daemon = Daemon::start_dev(&data);
    // Every admin token lost: both revoked by each other, say.
    let mut a = daemon.dev_client("dev-admin").await;
    let tokens = a
        .admin
        .list_tokens(pb::ListTokensRequest::default())
        .await
        .expect("tokens")
        .into_inner()
        .tokens;
    // The other admin's first, then the caller's own (its last call).
    let mut admin_tokens: Vec<&pb::TokenInfo> = tokens
        .iter()
        .filter(|t| t.operator_id.starts_with("dev-admin"))
        .collect();
    admin_tokens.sort_by_key(|t| t.operator_id != "dev-admin2");
    for token in admin_tokens {
        a.admin
            .revoke_token(pb::RevokeTokenRequest {
                token_id: token.token_id.clone(),
            })
            .await
            .expect("revoke");
    }
    let status = a
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .expect_err("locked out");
    assert_eq!(status.code(), Code::Unauthenticated);
    assert!(daemon.stop().success());

    // The holder of the key backend recovers on the host; a non-admin is refused.
    let options = daemon.options().clone();
    let out = dir.path().join("recovered.token");
    let refused = vault_tests::daemon::run_once(
        &data,
        &options,
        &[
            "--recover-admin",
            "dev-handler",
            "--token-out",
            out.to_str().expect("utf-8"),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not an admin"));
    assert!(!out.exists());
    let recovered = vault_tests::daemon::run_once(
        &data,
        &options,
        &[
            "--recover-admin",
            "dev-admin",
            "--token-out",
            out.to_str().expect("utf-8"),
        ],
    );
    let stdout = String::from_utf8_lossy(&recovered.stdout).into_owned();
    assert!(
        recovered.status.success() && stdout.contains("ADMIN_RECOVER recorded"),
        "{stdout}{}",
        String::from_utf8_lossy(&recovered.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = vault_client::read_token_file(&out).expect("token");
    assert!(!stdout.contains(secrecy::ExposeSecret::expose_secret(&token)));

    // The daemon starts on the store (the recovery is anchored), and the token works.
    daemon.start_in_place();
    let mut admin = daemon.client(Some(token.clone())).await;
    admin
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .expect("back in");
    let entries = export_audit(&mut admin).await;
    let recovery: Vec<&pb::AuditEntry> = entries
        .iter()
        .filter(|e| e.action == "ADMIN_RECOVER")
        .collect();
    assert_eq!(recovery.len(), 1, "{recovery:?}");
    assert_eq!(recovery[0].operator_id, "host");
    assert!(recovery[0].reason.contains("dev-admin"), "{recovery:?}");
    assert!(!format!("{entries:?}").contains(secrecy::ExposeSecret::expose_secret(&token)));
    let verify = admin
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await
        .expect("verify")
        .into_inner();
    assert!(verify.ok, "{}", verify.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_admin_leaves_too_few_admins_to_approve() {
    use tonic_types::StatusExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut a = daemon.dev_client("dev-admin").await;
    let mut b = daemon.dev_client("dev-admin2").await;
    let disable = |id: &str| pb::DisableOperatorRequest {
        operator_id: id.into(),
    };

    // Two admins, one approval needed: disabling either would leave no approver.
    let status = a
        .admin
        .disable_operator(disable("dev-admin2"))
        .await
        .expect_err("the last approver");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert_eq!(
        status
            .get_error_details()
            .error_info()
            .expect("reason")
            .reason,
        "TOO_FEW_ADMINS"
    );
    assert!(status.message().contains("would leave 1"), "{status:?}");
    // Nothing changed: the other admin still approves.
    let request = create(&mut a, "h-after", pb::Role::Handler).await;
    approve(&mut b, Some(request)).await;

    // With a third admin, one may be disabled; then no more.
    approve(
        &mut b,
        Some(create(&mut a, "admin-c", pb::Role::Admin).await),
    )
    .await;
    a.admin
        .disable_operator(disable("admin-c"))
        .await
        .expect("three admins leave two");
    let status = b
        .admin
        .disable_operator(disable("dev-admin"))
        .await
        .expect_err("two admins are the least");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    // Handlers are disabled as before.
    a.admin
        .disable_operator(disable("h-after"))
        .await
        .expect("a handler");
    drop(daemon);
}

/// The sock puppet: rogue admin A asks for a new admin and for its token; honest admin B
/// approves both as routine. A must end with no working token for the puppet: A holds share 1,
/// B received share 2, and only the puppet's holder, given both, has the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sock_puppet_admin_gives_its_requester_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_dev(&dir.path().join("data"));
    let mut a = daemon.dev_client("dev-admin").await;
    let mut b = daemon.dev_client("dev-admin2").await;

    approve(&mut b, Some(create(&mut a, "ops3", pb::Role::Admin).await)).await;
    let asked = a
        .admin
        .issue_token(pb::IssueTokenRequest {
            operator_id: "ops3".into(),
            ttl_seconds: 86_400,
            cert_fingerprint: "ab".repeat(32),
        })
        .await
        .expect("ask for the puppet's token")
        .into_inner();
    assert!(asked.token.is_empty(), "the requester gets no token");
    assert!(asked.token_share.starts_with("mns_"), "{asked:?}");
    // What B is asked to approve, in plain words.
    let held = asked.pending_request.clone().expect("held");
    for told in [
        "operator ops3",
        "(admin;",
        "no purposes",
        "JST",
        "bound to the client certificate",
        "dev-admin (the requester) holds share 1",
        "receives share 2",
    ] {
        assert!(held.summary.contains(told), "{told:?} in {}", held.summary);
    }
    assert!(
        !held.summary.contains("ms"),
        "a date, not milliseconds: {}",
        held.summary
    );
    let applied = approve(&mut b, Some(held)).await;
    let second = applied.token_share.clone();
    assert!(second.starts_with("mns_"), "{applied:?}");

    // Everything A can try with what A holds is refused; so is B's share alone.
    let mut attempts = vec![
        secrecy::SecretString::from(asked.token_share.clone()),
        dressed_as_token(&asked.token_share),
        secrecy::SecretString::from(second.clone()),
        dressed_as_token(&second),
    ];
    // Share 1 twice over, as if the other half could be guessed from it.
    let own_secret = asked.token_share.rsplit('_').next().expect("secret");
    attempts.push(format!("mnt_{}_{own_secret}{own_secret}", asked.token_id).into());
    for token in attempts {
        let mut client = daemon.client(Some(token)).await;
        let status = client
            .admin
            .list_operators(pb::ListOperatorsRequest {})
            .await
            .expect_err("no working token from one share");
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    // Two copies of one share do not combine either.
    assert!(
        vault_client::combine_token_shares(
            &asked.token_share.clone().into(),
            &asked.token_share.clone().into()
        )
        .is_err()
    );
    // The holder of both shares has the token (bound to a certificate this plaintext test
    // connection does not present, so it names that instead of the secret).
    let combined = vault_client::combine_token_shares(
        &second.clone().into(),
        &asked.token_share.clone().into(),
    )
    .expect("combine, in either order");
    let mut puppet = daemon.client(Some(combined)).await;
    let status = puppet
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .expect_err("certificate-bound");
    assert!(status.message().contains("certificate"), "{status:?}");

    // Without the binding, the combined token works — for its holder, not for A.
    let (_, token) = split_token(&mut a, &mut b, token_for("ops3")).await;
    let mut puppet = daemon.client(Some(token)).await;
    puppet
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await
        .expect("the combined token works");
    // No share is ever written to the audit log.
    let entries = export_audit(&mut a).await;
    let text = format!("{entries:?}");
    assert!(!text.contains(own_secret));
    assert!(!text.contains(second.rsplit('_').next().expect("secret")));
    drop(daemon);
}
