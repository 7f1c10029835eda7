//! The locker's state for the people who watch it: who is signed in and the daemon's health,
//! key versions and rewrap progress, and the audit chain (verified now, its last checkpoint,
//! the key backend's anchor).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use vault_client::pb;

use super::{Chrome, Failure, Shared, SignedIn, page};
use crate::views;

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    operator_id: String,
    token_id: String,
    token_expires: String,
    endpoint: String,
    health: String,
}

/// Who is signed in, and whether the daemon serves.
pub async fn home(State(app): State<Shared>, mut signed: SignedIn) -> Result<Response, Failure> {
    let answer = signed.client.admin.who_am_i(pb::WhoAmIRequest {}).await;
    let who = signed.answer(&app, answer)?;
    page(&HomePage {
        chrome: Chrome::of(&signed.session, "ホーム"),
        operator_id: signed.session.person.operator_id.clone(),
        token_id: who.token_id,
        token_expires: views::jst(who.token_expires_at_unix),
        endpoint: app.daemon.endpoint().to_owned(),
        health: app.daemon.health().await,
    })
}

struct TenantKeys {
    tenant: String,
    versions: Vec<(u32, String)>,
    job: String,
}

struct DestructionRow {
    id: String,
    tenant: String,
    version: u32,
    requested_by: String,
    requested_at: String,
    state: String,
    approved_by: String,
    not_before: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    tenants: Vec<TenantKeys>,
    destructions: Vec<DestructionRow>,
}

fn job_text(job: &pb::RewrapJob) -> String {
    let state = if job.finished_at_unix_ms == 0 {
        "実行中".to_owned()
    } else {
        format!("{} 完了", views::jst_ms(job.finished_at_unix_ms))
    };
    format!(
        "v{} へ {} / {} 件（{}、依頼 {}）",
        job.target_version, job.done, job.total, state, job.requested_by
    )
}

/// Key versions, rewrap progress and destruction requests.
pub async fn keys(State(app): State<Shared>, mut signed: SignedIn) -> Result<Response, Failure> {
    let answer = signed
        .client
        .admin
        .key_status(pb::KeyStatusRequest {
            tenant: String::new(),
        })
        .await;
    let status = signed.answer(&app, answer)?;
    let answer = signed
        .client
        .admin
        .list_key_destructions(pb::ListKeyDestructionsRequest {})
        .await;
    let destructions = signed.answer(&app, answer)?.requests;
    page(&KeysPage {
        chrome: Chrome::of(&signed.session, "鍵"),
        tenants: status
            .tenants
            .iter()
            .map(|t| TenantKeys {
                tenant: t.tenant.clone(),
                versions: t
                    .versions
                    .iter()
                    .map(|v| (v.version, views::state_ja(&v.state)))
                    .collect(),
                job: t.job.as_ref().map(job_text).unwrap_or_default(),
            })
            .collect(),
        destructions: destructions
            .iter()
            .map(|d| DestructionRow {
                id: d.id.clone(),
                tenant: d.tenant.clone(),
                version: d.version,
                requested_by: d.requested_by.clone(),
                requested_at: views::jst(d.requested_at_unix),
                state: views::state_ja(&d.state),
                approved_by: d.approved_by.clone(),
                not_before: views::jst(d.not_before_unix),
            })
            .collect(),
    })
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    fields: Vec<(&'static str, String)>,
}

/// The audit chain: verified now by the daemon, its last checkpoint and the anchor.
pub async fn audit(State(app): State<Shared>, mut signed: SignedIn) -> Result<Response, Failure> {
    let answer = signed
        .client
        .admin
        .audit_verify(pb::AuditVerifyRequest {})
        .await;
    let verify = signed.answer(&app, answer)?;
    let answer = signed
        .client
        .admin
        .audit_checkpoints(pb::AuditCheckpointsRequest { after_seq: 0 })
        .await;
    let checkpoints = signed.answer(&app, answer)?;
    let last = checkpoints.checkpoints.last();
    let anchor = checkpoints.anchor.unwrap_or_default();
    let result = if verify.ok {
        "正常（改ざんなし）".to_owned()
    } else {
        format!("異常: 記録 {} — {}", verify.first_bad_seq, verify.message)
    };
    page(&AuditPage {
        chrome: Chrome::of(&signed.session, "監査ログ"),
        fields: vec![
            ("検証結果", result),
            ("検証した記録", verify.entries_checked.to_string()),
            ("最新のハッシュ", verify.head_hash),
            (
                "検証したチェックポイント",
                verify.checkpoints_verified.to_string(),
            ),
            (
                "チェックポイントで固定済み",
                format!("記録 {} まで", verify.anchored_through),
            ),
            (
                "最新のチェックポイント",
                last.map(|c| {
                    format!(
                        "第{}号（記録 {} まで、{}、監査鍵 v{}）",
                        c.number,
                        c.seq,
                        views::jst_ms(c.time_unix_ms),
                        c.key_version
                    )
                })
                .unwrap_or_else(|| "まだありません".into()),
            ),
            (
                "鍵の保管装置のアンカー",
                format!(
                    "チェックポイント第{}号（カウンタ {}、{}）",
                    anchor.checkpoint,
                    anchor.counter,
                    views::jst_ms(anchor.time_unix_ms)
                ),
            ),
        ],
    })
}
