//! Alerts as they come: the page refreshes itself (no script), newest first, with the
//! operators an alert suspended.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use vault_client::pb;

use super::{Chrome, Failure, Shared, SignedIn, page};
use crate::views;

/// How often the alerts page reloads itself.
const REFRESH_SECONDS: u32 = 5;
/// Alerts shown (the newest).
const SHOWN: usize = 100;

struct AlertRow {
    seq: u64,
    time: String,
    operator: String,
    tenant: String,
    reason: String,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    refresh_seconds: u32,
    refreshed: String,
    suspended: Vec<String>,
    alerts: Vec<AlertRow>,
}

/// The alerts and suspended operators.
pub async fn list(State(app): State<Shared>, mut signed: SignedIn) -> Result<Response, Failure> {
    let answer = signed
        .client
        .admin
        .list_alerts(pb::ListAlertsRequest { after_seq: 0 })
        .await;
    let mut alerts = signed.answer(&app, answer)?.alerts;
    alerts.sort_by_key(|a| std::cmp::Reverse(a.seq));
    alerts.truncate(SHOWN);
    // Who is suspended is an operator list, which not every role may read: shown where the
    // daemon allows it.
    let operators = signed
        .client
        .admin
        .list_operators(pb::ListOperatorsRequest {})
        .await;
    let suspended = match signed.answer(&app, operators) {
        Ok(list) => list
            .operators
            .iter()
            .filter(|o| o.disabled)
            .map(|o| {
                format!(
                    "{}（{}）",
                    o.operator_id,
                    views::role_ja(&views::role_name(o.role))
                )
            })
            .collect(),
        Err(Failure::Daemon {
            code: tonic::Code::PermissionDenied,
            ..
        }) => vec!["（この役割では操作者の一覧を見られません）".into()],
        Err(other) => return Err(other),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    page(&AlertsPage {
        chrome: Chrome::of(&signed.session, "警告"),
        refresh_seconds: REFRESH_SECONDS,
        refreshed: views::jst_ms(now),
        suspended,
        alerts: alerts
            .iter()
            .map(|a| AlertRow {
                seq: a.seq,
                time: views::jst_ms(a.time_unix_ms),
                operator: a.operator_id.clone(),
                tenant: a.tenant.clone(),
                reason: a.reason.clone(),
            })
            .collect(),
    })
}
