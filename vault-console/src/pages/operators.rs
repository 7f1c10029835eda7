//! Operators and their tokens (never a secret), and the request to register an operator,
//! which the daemon holds for another admin's approval.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use vault_client::pb;

use super::{Chrome, Failure, Form, Shared, SignedIn, page};
use crate::views;

struct OperatorRow {
    id: String,
    display_name: String,
    role: String,
    state: String,
    grants: String,
    created: String,
}

struct TokenRow {
    id: String,
    operator: String,
    issued: String,
    expires: String,
    state: String,
    bound: String,
}

#[derive(Template)]
#[template(path = "operators.html")]
struct OperatorsPage {
    chrome: Chrome,
    /// Admins may ask to register an operator (the daemon decides; others see no form).
    may_create: bool,
    created: String,
    operators: Vec<OperatorRow>,
    tokens: Vec<TokenRow>,
}

async fn render(app: &Shared, signed: &mut SignedIn, created: String) -> Result<Response, Failure> {
    let answer = signed
        .client
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await;
    let operators = signed.answer(app, answer)?.operators;
    let answer = signed
        .client
        .admin
        .list_tokens(pb::ListTokensRequest {
            operator_id: String::new(),
        })
        .await;
    let tokens = signed.answer(app, answer)?.tokens;
    page(&OperatorsPage {
        chrome: Chrome::of(&signed.session, "操作者とトークン"),
        may_create: signed.session.person.role == "admin",
        created,
        operators: operators
            .iter()
            .map(|o| OperatorRow {
                id: o.operator_id.clone(),
                display_name: o.display_name.clone(),
                role: views::role_ja(&views::role_name(o.role)),
                state: if o.disabled { "停止中" } else { "有効" }.into(),
                grants: o
                    .grants
                    .iter()
                    .map(|g| format!("{}: {}", g.tenant, g.purpose))
                    .collect::<Vec<_>>()
                    .join("、"),
                created: views::jst(o.created_at_unix),
            })
            .collect(),
        tokens: tokens
            .iter()
            .map(|t| TokenRow {
                id: t.token_id.clone(),
                operator: t.operator_id.clone(),
                issued: views::jst(t.issued_at_unix),
                expires: views::jst(t.expires_at_unix),
                state: if t.revoked { "失効" } else { "有効" }.into(),
                bound: if t.cert_fingerprint.is_empty() {
                    "なし".into()
                } else {
                    "証明書に紐付け".into()
                },
            })
            .collect(),
    })
}

/// The operators and tokens.
pub async fn list(State(app): State<Shared>, mut signed: SignedIn) -> Result<Response, Failure> {
    render(&app, &mut signed, String::new()).await
}

/// Asks to register an operator (held for approval).
pub async fn create(
    State(app): State<Shared>,
    mut signed: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let form = Form::parse(&body);
    signed.check_post(&app, &headers, &form)?;
    let role = match form.first("role") {
        Some("handler") => pb::Role::Handler,
        Some("manager") => pb::Role::Manager,
        Some("auditor") => pb::Role::Auditor,
        Some("service") => pb::Role::Service,
        Some("admin") => pb::Role::Admin,
        _ => return Err(Failure::BadInput("役割を選んでください。".into())),
    };
    let answer = signed
        .client
        .admin
        .create_operator(pb::CreateOperatorRequest {
            operator_id: form.first("operator_id").unwrap_or("").trim().to_owned(),
            role: role as i32,
            display_name: form.first("display_name").unwrap_or("").trim().to_owned(),
        })
        .await;
    let operator = signed.answer(&app, answer)?;
    let created = match &operator.pending_request {
        Some(request) => format!(
            "操作者 {} の登録を依頼しました（依頼 {}、承認 {} 人が必要）。",
            operator.operator_id, request.id, request.required
        ),
        None => format!("操作者 {} を登録しました。", operator.operator_id),
    };
    render(&app, &mut signed, created).await
}
