//! Dual control: the change requests waiting for approval, with what an approver must know in
//! words and local time, approved or denied (with a reason) several at once. The daemon
//! refuses what the person may not decide (their own request, a second approval).

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use vault_client::pb;

use super::{Chrome, Failure, Form, Shared, SignedIn, page};
use crate::views;

struct Row {
    id: String,
    kind: String,
    summary: String,
    operator: String,
    requested_by: String,
    requested_at: String,
    expires_at: String,
    approvals: String,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    chrome: Chrome,
    quorum: u32,
    rows: Vec<Row>,
}

/// The pending change requests.
pub async fn list(State(app): State<Shared>, mut signed: SignedIn) -> Result<Response, Failure> {
    let answer = signed
        .client
        .admin
        .list_change_requests(pb::ListChangeRequestsRequest { pending_only: true })
        .await;
    let list = signed.answer(&app, answer)?;
    let rows = list
        .requests
        .iter()
        .map(|r| Row {
            id: r.id.clone(),
            kind: views::kind_ja(&r.kind),
            summary: r.summary.clone(),
            operator: r.operator_id.clone(),
            requested_by: r.requested_by.clone(),
            requested_at: views::jst(r.requested_at_unix),
            expires_at: views::jst(r.expires_at_unix),
            approvals: format!(
                "{} / {}{}",
                r.approved_by.len(),
                r.required,
                if r.approved_by.is_empty() {
                    String::new()
                } else {
                    format!("（{}）", r.approved_by.join("、"))
                }
            ),
        })
        .collect();
    page(&RequestsPage {
        chrome: Chrome::of(&signed.session, "承認待ちの変更"),
        quorum: list.quorum,
        rows,
    })
}

struct Decision {
    id: String,
    ok: bool,
    outcome: String,
}

struct Share {
    operator: String,
    share: String,
}

#[derive(Template)]
#[template(path = "decided.html")]
struct DecidedPage {
    chrome: Chrome,
    decisions: Vec<Decision>,
    shares: Vec<Share>,
}

/// Most requests one post decides (a page lists far fewer).
const MAX_DECISIONS: usize = 50;

/// Approves or denies the chosen requests, each as its own call (one refused does not stop
/// the others), and shows each result.
pub async fn decide(
    State(app): State<Shared>,
    mut signed: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let form = Form::parse(&body);
    signed.check_post(&app, &headers, &form)?;
    let ids = form.all("id");
    if ids.is_empty() {
        return Err(Failure::BadInput("変更が選ばれていません。".into()));
    }
    if ids.len() > MAX_DECISIONS {
        return Err(Failure::BadInput(format!(
            "一度に決定できるのは {MAX_DECISIONS} 件までです。"
        )));
    }
    let approve = match form.first("action") {
        Some("approve") => true,
        Some("deny") => false,
        _ => return Err(Failure::BadInput("承認か却下かを選んでください。".into())),
    };
    let reason = form.first("reason").unwrap_or("").trim().to_owned();
    if !approve && reason.is_empty() {
        return Err(Failure::BadInput("却下の理由を書いてください。".into()));
    }
    let mut decisions = Vec::new();
    let mut shares = Vec::new();
    for id in ids {
        let answer = if approve {
            signed
                .client
                .admin
                .approve_change_request(pb::ChangeRequestIdRequest { id: id.clone() })
                .await
        } else {
            signed
                .client
                .admin
                .deny_change_request(pb::DenyChangeRequestRequest {
                    id: id.clone(),
                    reason: reason.clone(),
                })
                .await
        };
        match signed.answer(&app, answer) {
            Ok(request) => {
                if !request.token_share.is_empty() {
                    shares.push(Share {
                        operator: request.operator_id.clone(),
                        share: request.token_share.clone(),
                    });
                }
                decisions.push(Decision {
                    id,
                    ok: true,
                    outcome: match request.state.as_str() {
                        "pending" => format!(
                            "承認を記録しました（{} / {}）",
                            request.approved_by.len(),
                            request.required
                        ),
                        state => views::state_ja(state),
                    },
                });
            }
            Err(Failure::Daemon {
                code: tonic::Code::Unauthenticated,
                ..
            }) => return Err(Failure::SignedOut),
            Err(Failure::Daemon {
                code,
                reason,
                message,
            }) => decisions.push(Decision {
                id,
                ok: false,
                outcome: format!(
                    "{}: {message}",
                    if reason.is_empty() {
                        vault_client::code_name(code).to_owned()
                    } else {
                        reason
                    }
                ),
            }),
            Err(other) => return Err(other),
        }
    }
    page(&DecidedPage {
        chrome: Chrome::of(
            &signed.session,
            if approve {
                "承認の結果"
            } else {
                "却下の結果"
            },
        ),
        decisions,
        shares,
    })
}
