//! Sign-in with the person's own token, pasted or chosen as a file (the daemon says whom it
//! authenticates), and sign-out. The token is never echoed, logged or sent back to the browser.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::{Chrome, Failure, Form, Shared, SignedIn, page};
use crate::guard::{self, SESSION_COOKIE, SIGNIN_COOKIE};
use crate::session::Person;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    chrome: Chrome,
    signin: String,
    notice: String,
    idle: String,
    absolute: String,
}

fn sign_in_page(app: &Shared, notice: &str) -> Result<Response, Failure> {
    let signin = app.sessions.random();
    let lifetimes = app.sessions.lifetimes();
    let mut response = page(&SignInPage {
        chrome: Chrome::anonymous("サインイン"),
        signin: signin.clone(),
        notice: notice.to_owned(),
        idle: humantime::format_duration(lifetimes.idle).to_string(),
        absolute: humantime::format_duration(lifetimes.absolute).to_string(),
    })?;
    response.headers_mut().append(
        header::SET_COOKIE,
        guard::set_cookie(SIGNIN_COOKIE, &signin),
    );
    Ok(response)
}

/// The sign-in form.
pub async fn form(State(app): State<Shared>) -> Result<Response, Failure> {
    sign_in_page(&app, "")
}

/// Longest token file read: a token file holds one line of a few dozen characters.
const MAX_TOKEN_FILE_BYTES: usize = 4096;

/// The sign-in form's fields, from the page's multipart form (a chosen file travels only
/// that way) or from a plain urlencoded post.
async fn sign_in_fields(app: &Shared, request: Request) -> Result<Form, Failure> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("multipart/form-data"));
    if !multipart {
        let body = Bytes::from_request(request, app)
            .await
            .map_err(|e| Failure::BadInput(e.body_text()))?;
        return Ok(Form::parse(&body));
    }
    let mut parts = Multipart::from_request(request, app)
        .await
        .map_err(|e| Failure::BadInput(e.body_text()))?;
    let mut fields = Vec::new();
    while let Some(field) = parts
        .next_field()
        .await
        .map_err(|e| Failure::BadInput(format!("the sign-in form is malformed: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        if !matches!(name.as_str(), "signin" | "token" | "token_file") {
            continue;
        }
        let bytes = Zeroizing::new(
            field
                .bytes()
                .await
                .map_err(|e| Failure::BadInput(format!("the sign-in form is malformed: {e}")))?
                .to_vec(),
        );
        if bytes.len() > MAX_TOKEN_FILE_BYTES {
            return Err(Failure::BadInput(format!(
                "{name} is over {MAX_TOKEN_FILE_BYTES} bytes: a token file holds one token"
            )));
        }
        // A file that is not text cannot hold a token; it counts as empty and is refused
        // below like an empty field, without saying what it held.
        let value = std::str::from_utf8(&bytes).unwrap_or_default().to_owned();
        fields.push((name, value));
    }
    Ok(Form::from_fields(fields))
}

/// Signs in with the token pasted or in the chosen file: the daemon must know it (`WhoAmI`).
pub async fn submit(State(app): State<Shared>, request: Request) -> Result<Response, Failure> {
    let headers = request.headers().clone();
    let form = sign_in_fields(&app, request).await?;
    let expected = guard::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    let origin = guard::own_origin(&headers, app.tls);
    guard::check_post(&headers, &origin, &expected, form.first("signin"))
        .map_err(Failure::Forbidden)?;
    let pasted = form.first("token").unwrap_or("").trim();
    let from_file = form.first("token_file").unwrap_or("").trim();
    let token = Zeroizing::new(if pasted.is_empty() { from_file } else { pasted }.to_owned());
    drop(form);
    if token.is_empty() {
        return sign_in_page(
            &app,
            "トークンを貼り付けるか、トークンファイルを選んでください。",
        );
    }
    let token = SecretString::from(token.as_str().to_owned());
    let Ok(mut client) = app.daemon.client(&token) else {
        return sign_in_page(&app, "トークンの形式が正しくありません。");
    };
    let who = match client
        .admin
        .who_am_i(vault_client::pb::WhoAmIRequest {})
        .await
    {
        Ok(who) => who.into_inner(),
        Err(status) if status.code() == tonic::Code::Unauthenticated => {
            return sign_in_page(
                &app,
                "トークンが受け付けられませんでした（失効・期限切れ・停止中、または誤り）。",
            );
        }
        Err(status) => return Err(status.into()),
    };
    let operator = who.operator.unwrap_or_default();
    let person = Person {
        operator_id: operator.operator_id,
        role: crate::views::role_name(operator.role),
        display_name: operator.display_name,
        token_id: who.token_id,
    };
    tracing::info!(operator = %person.operator_id, role = %person.role, token = %person.token_id, "signed in");
    let id = app.sessions.start(person, token);
    let mut response = Redirect::to("/").into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, guard::set_cookie(SESSION_COOKIE, &id));
    headers.append(header::SET_COOKIE, guard::set_cookie(SIGNIN_COOKIE, ""));
    Ok(response)
}

/// Ends the session (its token forgotten).
pub async fn sign_out(
    State(app): State<Shared>,
    signed: SignedIn,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    signed.check_post(&app, &headers, &Form::parse(&body))?;
    app.sessions.end(&signed.id);
    tracing::info!(operator = %signed.session.person.operator_id, "signed out");
    let mut response = Redirect::to("/signin").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, guard::set_cookie(SESSION_COOKIE, ""));
    Ok(response)
}
