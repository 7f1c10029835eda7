//! Sign-in with the person's own token (the daemon says whom it authenticates), and sign-out.
//! The token is never echoed, logged or sent back to the browser.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
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

/// Signs in with the posted token: the daemon must know it (`WhoAmI`).
pub async fn submit(
    State(app): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Failure> {
    let form = Form::parse(&body);
    let expected = guard::cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    let origin = guard::own_origin(&headers, app.tls);
    guard::check_post(&headers, &origin, &expected, form.first("signin"))
        .map_err(Failure::Forbidden)?;
    let token = Zeroizing::new(form.first("token").unwrap_or("").trim().to_owned());
    drop(form);
    if token.is_empty() {
        return sign_in_page(&app, "トークンを貼り付けてください。");
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
