//! The console's pages: the router, what every page shares (who is signed in, the navigation
//! for their role, the form token) and how a refusal from the daemon is shown. Each page calls
//! the daemon as the signed-in person; the daemon decides what they may see and do.

mod alerts;
mod files;
mod operators;
mod records;
mod reports;
mod requests;
mod signin;
mod status;

use std::path::PathBuf;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use vault_client::Client;

use crate::daemon::DaemonLink;
use crate::guard::{self, Forbidden, SESSION_COOKIE};
use crate::session::{Person, Session, Sessions};

/// What every handler shares.
pub struct App {
    /// The daemon.
    pub daemon: DaemonLink,
    /// Who is signed in.
    pub sessions: Arc<Sessions>,
    /// Whether the console serves HTTPS (its origin's scheme).
    pub tls: bool,
    /// The font for PDFs (`None`: found among the system's fonts).
    pub font: Option<PathBuf>,
}

/// The shared state handlers receive.
pub type Shared = Arc<App>;

/// Longest a page waits for a streamed audit export to end.
pub const EXPORT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Forms are small: a flood of large bodies is refused before it is read.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Every route of the console.
pub fn router(app: Shared) -> Router {
    Router::new()
        .route("/", get(status::home))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::sign_out))
        .route("/requests", get(requests::list))
        .route("/requests/decide", post(requests::decide))
        .route("/operators", get(operators::list).post(operators::create))
        .route("/alerts", get(alerts::list))
        .route("/ledger", get(records::ledger))
        .route("/ledger.csv", get(records::ledger_csv))
        .route("/ledger.pdf", get(records::ledger_pdf))
        .route("/reports/usage", get(reports::usage))
        .route("/reports/usage.csv", get(reports::usage_csv))
        .route("/reports/usage.pdf", get(reports::usage_pdf))
        .route("/reports/carry-outs", get(reports::carry_outs))
        .route("/reports/carry-outs.csv", get(reports::carry_outs_csv))
        .route("/reports/carry-outs.pdf", get(reports::carry_outs_pdf))
        .route("/reports/incident", get(reports::incident))
        .route("/reports/incident.csv", get(reports::incident_csv))
        .route("/reports/incident.pdf", get(reports::incident_pdf))
        .route("/certificates", get(records::certificates))
        .route("/certificates/{handle}", get(records::certificate))
        .route("/certificates/{handle}/pdf", get(records::certificate_pdf))
        .route(
            "/certificates/{handle}/json",
            get(records::certificate_json),
        )
        .route("/keys", get(status::keys))
        .route("/audit", get(status::audit))
        .route("/static/console.css", get(stylesheet))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(guard::security_headers))
        .with_state(app)
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/console.css"),
    )
        .into_response()
}

async fn not_found() -> Failure {
    Failure::NotFound
}

/// The frame around every page: the person, the links for their role, the form token.
pub struct Chrome {
    /// The page's title.
    pub title: String,
    /// Who is signed in (none on the sign-in page).
    pub person: Option<Person>,
    /// The form token of this session.
    pub csrf: String,
    /// Navigation: (path, label).
    pub links: Vec<(&'static str, &'static str)>,
}

impl Chrome {
    /// The frame for `session`'s pages.
    pub fn of(session: &Session, title: &str) -> Chrome {
        Chrome {
            title: title.to_owned(),
            links: links_for(&session.person.role),
            person: Some(session.person.clone()),
            csrf: session.csrf.clone(),
        }
    }

    /// The frame of a page for nobody signed in.
    pub fn anonymous(title: &str) -> Chrome {
        Chrome {
            title: title.to_owned(),
            person: None,
            csrf: String::new(),
            links: Vec::new(),
        }
    }

    /// The person's role, in words.
    pub fn role_ja(&self) -> String {
        self.person
            .as_ref()
            .map(|p| crate::views::role_ja(&p.role))
            .unwrap_or_default()
    }
}

/// What each role's work is about (the daemon still decides every call).
fn links_for(role: &str) -> Vec<(&'static str, &'static str)> {
    let mut links = vec![("/", "ホーム")];
    match role {
        "admin" => links.extend([
            ("/requests", "承認待ちの変更"),
            ("/operators", "操作者とトークン"),
            ("/alerts", "警告"),
            ("/keys", "鍵"),
            ("/ledger", "管理台帳"),
            ("/reports/usage", "利用状況"),
            ("/reports/carry-outs", "持出し記録"),
            ("/reports/incident", "漏えい等の調査"),
            ("/certificates", "削除証明書"),
            ("/audit", "監査ログ"),
        ]),
        "auditor" => links.extend([
            ("/requests", "変更依頼"),
            ("/alerts", "警告"),
            ("/ledger", "管理台帳"),
            ("/reports/usage", "利用状況"),
            ("/reports/carry-outs", "持出し記録"),
            ("/reports/incident", "漏えい等の調査"),
            ("/certificates", "削除証明書"),
            ("/keys", "鍵"),
            ("/audit", "監査ログ"),
        ]),
        "manager" => links.extend([
            ("/alerts", "警告"),
            ("/ledger", "管理台帳"),
            ("/reports/usage", "利用状況"),
            ("/reports/carry-outs", "持出し記録"),
            ("/certificates", "削除証明書"),
        ]),
        _ => {}
    }
    links
}

/// A request from a signed-in person: their session, and a client that calls as them.
pub struct SignedIn {
    /// The session's id (the cookie's value).
    pub id: String,
    /// The session.
    pub session: Session,
    /// Calls the daemon with the session's token.
    pub client: Client,
}

impl FromRequestParts<Shared> for SignedIn {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, app: &Shared) -> Result<SignedIn, Failure> {
        let id = guard::cookie(&parts.headers, SESSION_COOKIE).ok_or(Failure::SignedOut)?;
        let session = app.sessions.touch(&id).ok_or(Failure::SignedOut)?;
        let client = app
            .daemon
            .client(&session.token)
            .map_err(|e| Failure::Internal(e.to_string()))?;
        Ok(SignedIn {
            id,
            session,
            client,
        })
    }
}

impl SignedIn {
    /// A daemon answer as a page's data; a token the daemon no longer accepts (revoked,
    /// expired, its operator disabled) ends the session.
    pub fn answer<T>(
        &self,
        app: &App,
        answer: Result<tonic::Response<T>, tonic::Status>,
    ) -> Result<T, Failure> {
        match answer {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => {
                if status.code() == tonic::Code::Unauthenticated {
                    app.sessions.end(&self.id);
                }
                Err(Failure::from(status))
            }
        }
    }

    /// The audit entries `request` asks for, read to the end within [`EXPORT_DEADLINE`]: the
    /// channel's timeout covers a call's answer, not a stream that stalls halfway.
    pub async fn export(
        &mut self,
        app: &App,
        request: vault_client::pb::AuditExportRequest,
    ) -> Result<Vec<vault_client::pb::AuditEntry>, Failure> {
        let answer = self.client.admin.audit_export(request).await;
        let mut stream = self.answer(app, answer)?;
        let read = async {
            let mut entries = Vec::new();
            while let Some(entry) = stream.message().await? {
                entries.push(entry);
            }
            Ok::<_, tonic::Status>(entries)
        };
        match tokio::time::timeout(EXPORT_DEADLINE, read).await {
            Ok(entries) => entries.map_err(Failure::from),
            Err(_) => Err(Failure::from(tonic::Status::deadline_exceeded(
                "the daemon stopped sending the audit log",
            ))),
        }
    }

    /// Checks a form post against this session (origin and form token).
    pub fn check_post(&self, app: &App, headers: &HeaderMap, form: &Form) -> Result<(), Failure> {
        let origin = guard::own_origin(headers, app.tls);
        guard::check_post(headers, &origin, &self.session.csrf, form.first("csrf"))
            .map_err(Failure::Forbidden)
    }
}

/// A posted form's fields, repeated names kept (several requests approved at once). Its
/// values are wiped when it is dropped: the sign-in form holds a token.
pub struct Form(Vec<(String, String)>);

impl Drop for Form {
    fn drop(&mut self) {
        for (_, value) in &mut self.0 {
            zeroize::Zeroize::zeroize(value);
        }
    }
}

impl Form {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    /// A form of these fields (already read, e.g. from a multipart body).
    pub fn from_fields(fields: Vec<(String, String)>) -> Form {
        Form(fields)
    }

    /// The first value of `name`.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }
}

/// Why a page is not shown.
#[derive(Debug)]
pub enum Failure {
    /// No session, or it ended: sign in again.
    SignedOut,
    /// A form not from this session's pages.
    Forbidden(Forbidden),
    /// The daemon refused or failed the call.
    Daemon {
        /// The gRPC code.
        code: tonic::Code,
        /// The daemon's machine-readable reason.
        reason: String,
        /// The daemon's message (never a number: the daemon never puts one in an error).
        message: String,
    },
    /// The request itself is malformed.
    BadInput(String),
    /// No such page.
    NotFound,
    /// The console failed (rendering, a PDF).
    Internal(String),
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Failure {
        Failure::Daemon {
            code: status.code(),
            reason: vault_client::reason_of(&status),
            message: status.message().to_owned(),
        }
    }
}

impl From<askama::Error> for Failure {
    fn from(error: askama::Error) -> Failure {
        Failure::Internal(format!("rendering the page failed: {error}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    message: String,
    reason: String,
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let (status, heading, message, reason) = match self {
            Failure::SignedOut => {
                let mut response = Redirect::to("/signin").into_response();
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, guard::set_cookie(SESSION_COOKIE, ""));
                return response;
            }
            Failure::Forbidden(forbidden) => (
                StatusCode::FORBIDDEN,
                "この送信は受け付けられません".to_owned(),
                forbidden.to_string(),
                forbidden.reason().to_owned(),
            ),
            Failure::Daemon {
                code,
                reason,
                message,
            } => {
                let (status, heading) = match code {
                    tonic::Code::PermissionDenied => {
                        (StatusCode::FORBIDDEN, "この操作の権限がありません")
                    }
                    tonic::Code::InvalidArgument
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::AlreadyExists
                    | tonic::Code::OutOfRange => (StatusCode::BAD_REQUEST, "受け付けられません"),
                    tonic::Code::NotFound => (StatusCode::NOT_FOUND, "見つかりません"),
                    tonic::Code::ResourceExhausted => {
                        (StatusCode::TOO_MANY_REQUESTS, "回数の上限に達しました")
                    }
                    _ => (StatusCode::BAD_GATEWAY, "ロッカーが応答できません"),
                };
                let reason = if reason.is_empty() {
                    vault_client::code_name(code).to_owned()
                } else {
                    reason
                };
                (status, heading.to_owned(), message, reason)
            }
            Failure::BadInput(message) => (
                StatusCode::BAD_REQUEST,
                "入力が正しくありません".to_owned(),
                message,
                "BAD_INPUT".to_owned(),
            ),
            Failure::NotFound => (
                StatusCode::NOT_FOUND,
                "ページが見つかりません".to_owned(),
                String::new(),
                "NOT_FOUND".to_owned(),
            ),
            Failure::Internal(message) => {
                tracing::error!(%message, "console failure");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "コンソールの内部エラー".to_owned(),
                    message,
                    "INTERNAL".to_owned(),
                )
            }
        };
        let page = ErrorPage {
            chrome: Chrome::anonymous(&heading),
            message,
            reason,
        };
        let body = page.render().unwrap_or_else(|_| "error".to_owned());
        let mut response = (status, Html(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(&page.reason) {
            response.headers_mut().insert("x-console-reason", value);
        }
        response
    }
}

/// A rendered page.
pub fn page(template: &impl Template) -> Result<Response, Failure> {
    Ok(Html(template.render()?).into_response())
}

/// A file to download: its type and name, never cached.
pub fn download(bytes: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    response
}
