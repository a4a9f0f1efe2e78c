//! `POST /api/v1/auth/login`, `GET /api/v1/auth/me` and `POST /api/v1/auth/password`.
//!
//! The login checks an argon2 password hash and returns an HS256 token signed with
//! `M_JWT_SECRET`. An unknown user, a disabled one, one without a password and a wrong password
//! get the same 401 after the same work (a decoy hash is verified when there is no real one).
//! Attempts are limited per account and per client address (`M_RATE_LIMIT_LOGIN` a minute each),
//! for existing and unknown accounts alike, so a 429 says nothing about whether an account exists.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, ApiState, Caller, json_body, json_response};
use crate::users::normalise;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

pub async fn login(State(state): State<ApiState>, _: super::NoQuery, req: Request) -> Result<Response, ApiError> {
    // Refused before any password is checked, so the answer says nothing about one.
    if !state.auth.can_issue() {
        return Err(ApiError::Edge {
            status: StatusCode::NOT_IMPLEMENTED,
            code: "login_unavailable",
            message: "this server cannot issue tokens: set M_JWT_SECRET (with M_JWT_JWKS_URL tokens come from the identity provider)".into(),
        });
    }
    let limits = state.rate_limits.clone();
    let ip = limits.client(&req);
    let body = json_body(&state, req.into_body()).await?;
    let body: LoginBody = serde_json::from_value(body).map_err(|e| {
        ApiError::BadRequest(format!("the login takes {{\"username\": <email>, \"password\": <string>}}: {e}"))
    })?;
    let user = normalise(&body.username);
    // Both limits count every attempt; the account key is the name as given (normalised), known
    // or not. The address is checked first, so a throttled address does not use up an account's
    // attempts.
    let policy = limits.login;
    for key in [format!("login:ip:{ip}"), format!("login:user:{user}")] {
        if let Err(refused) = limits.check(&key, policy).await {
            tracing::info!(target: "m::audit", user = %user, ip = %ip, "login refused: too many attempts");
            return Ok(refused);
        }
    }
    let Some(name) = state.users.login(&user, &body.password).await? else {
        tracing::info!(target: "m::audit", user = %user, ip = %ip, "login failed");
        return Err(ApiError::InvalidCredentials);
    };
    state.users.forget(&name);
    let Some(token) = state.auth.issue(&name, state.token_ttl_secs) else {
        return Err(crate::repo::RepoError::Internal("signing a token failed".into()).into());
    };
    tracing::info!(target: "m::audit", user = %name, ip = %ip, "login");
    let mut res = json_response(
        StatusCode::OK,
        &serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": state.token_ttl_secs}),
    );
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// The caller: name, full name and roles (from the database).
pub async fn me(State(state): State<ApiState>, caller: Caller, _: super::NoQuery) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let full_name = match state.users.user_info(&who.user).await {
        Ok(info) => info.full_name,
        Err(crate::repo::RepoError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let body = serde_json::json!({
        "name": who.user,
        "full_name": full_name,
        "roles": who.roles,
        "system_manager": who.is_system_manager(),
    });
    Ok(json_response(StatusCode::OK, &body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    /// Whose password (default: the caller's). Another user's needs System Manager.
    #[serde(default)]
    user: Option<String>,
    password: String,
    /// The caller's current password (required unless the caller is a System Manager).
    #[serde(default)]
    current_password: Option<String>,
}

/// Set a password: users change their own with their current password; a System Manager sets
/// anyone's. 204 on success.
pub async fn set_password(
    State(state): State<ApiState>,
    caller: Caller,
    _: super::NoQuery,
    req: Request,
) -> Result<Response, ApiError> {
    let who = &*caller.who;
    let body = json_body(&state, req.into_body()).await?;
    let body: PasswordBody = serde_json::from_value(body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the password change takes {{\"password\", \"current_password\"?, \"user\"?}}: {e}"
        ))
    })?;
    let target = body.user.as_deref().map_or_else(|| who.user.clone(), normalise);
    if !who.is_system_manager() {
        if target != who.user {
            return Err(crate::repo::RepoError::Forbidden { doctype: "User".into(), action: "write" }.into());
        }
        let limits = &state.rate_limits;
        if let Err(refused) = limits.check(&format!("login:user:{target}"), limits.login).await {
            return Ok(refused);
        }
        let current = body.current_password.as_deref().unwrap_or_default();
        if state.users.login(&target, current).await?.is_none() {
            tracing::info!(target: "m::audit", user = %target, "password change refused: wrong current password");
            return Err(crate::repo::RepoError::NotPermitted("the current password is wrong".into()).into());
        }
    }
    state.users.set_password(&target, &body.password).await?;
    tracing::info!(target: "m::audit", user = %who.user, target_user = %target, "password set");
    Ok(StatusCode::NO_CONTENT.into_response())
}
