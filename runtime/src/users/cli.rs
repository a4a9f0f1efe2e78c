//! `m user:*`: manage users from the command line, through the same repository (and so the same
//! rules) as the API, acting as the Administrator. The server sees a change within a second.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::app::App;
use crate::config::Config;
use crate::db::Db;
use crate::list_query;
use crate::perms::Principal;
use crate::repo::{Expect, Repo, RepoError};

use super::{USER_DOCTYPE, UserInfo, normalise};

/// One `m user:*` command.
#[derive(Debug, Clone)]
pub enum UserCommand {
    Create {
        email: String,
        password: Option<String>,
        password_stdin: bool,
        full_name: Option<String>,
        roles: Vec<String>,
    },
    AddRole {
        email: String,
        role: String,
    },
    RemoveRole {
        email: String,
        role: String,
    },
    Enable {
        email: String,
        enabled: bool,
    },
    SetPassword {
        email: String,
        password: Option<String>,
    },
    List {
        json: bool,
    },
}

/// Why a user command failed, as the user should read it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserCliError(String);

impl From<RepoError> for UserCliError {
    fn from(e: RepoError) -> Self {
        UserCliError(match e {
            RepoError::Validation(issues) => {
                issues.iter().map(|i| format!("{}: {}", i.field, i.message)).collect::<Vec<_>>().join("; ")
            }
            RepoError::NotFound => "no such user".into(),
            other => other.to_string(),
        })
    }
}

pub async fn run(cmd: UserCommand, config: &Config, app: App) -> Result<(), UserCliError> {
    let db = Db::connect(config.database_url.expose(), &config.pool())
        .await
        .map_err(|e| UserCliError(format!("cannot connect to the database: {e}")))?;
    let repo = Repo::new(app, db, config.list_limits());
    repo.ensure_administrator().await.map_err(|e| {
        UserCliError(format!(
            "the database has no users table yet ({e}): run `m migrate`, or start the server once in development"
        ))
    })?;
    let admin = Principal::administrator();
    match cmd {
        UserCommand::Create { email, password, password_stdin, full_name, roles } => {
            let password = if password_stdin { Some(read_password()?) } else { password };
            if let Some(p) = &password {
                // Checked before the user exists, so a weak password leaves nothing behind.
                super::hash_password(p).await?;
            }
            let email = normalise(&email);
            let roles: Vec<_> = roles.iter().map(|r| serde_json::json!({"role": r})).collect();
            let body = serde_json::json!({"email": email, "full_name": full_name, "roles": roles});
            let doc = repo.create(&admin, USER_DOCTYPE, &body).await?;
            if let Some(p) = &password {
                repo.set_password(doc.name(), p).await?;
            }
            let info = UserInfo::from_doc(&doc);
            println!("created user {} (roles: {})", info.name, describe(&info.roles));
            if password.is_none() {
                println!("no password set: run `m user:set-password --email {}` to let them log in", info.name);
            }
        }
        UserCommand::AddRole { email, role } => {
            let info = repo.user_info(&normalise(&email)).await?;
            if info.roles.contains(&role) {
                println!("{} already has role {role}", info.name);
                return Ok(());
            }
            let mut roles = info.roles.clone();
            roles.push(role);
            let info = set_roles(&repo, &info.name, &roles).await?;
            println!("{}: roles {}", info.name, describe(&info.roles));
        }
        UserCommand::RemoveRole { email, role } => {
            let info = repo.user_info(&normalise(&email)).await?;
            if !info.roles.contains(&role) {
                return Err(UserCliError(format!("{} does not have role {role}", info.name)));
            }
            let roles: Vec<String> = info.roles.iter().filter(|r| **r != role).cloned().collect();
            let info = set_roles(&repo, &info.name, &roles).await?;
            println!("{}: roles {}", info.name, describe(&info.roles));
        }
        UserCommand::Enable { email, enabled } => {
            let name = normalise(&email);
            let body = serde_json::json!({"enabled": enabled});
            let doc = repo.update(&admin, USER_DOCTYPE, &name, &body, &Expect::default()).await?;
            println!("{} {}", doc.name(), if enabled { "enabled" } else { "disabled" });
        }
        UserCommand::SetPassword { email, password } => {
            let password = match password {
                Some(p) => p,
                None => read_password()?,
            };
            let name = normalise(&email);
            repo.set_password(&name, &password).await?;
            println!("password set for {name}");
        }
        UserCommand::List { json } => {
            let users = list(&repo).await?;
            if json {
                let text = serde_json::to_string_pretty(&users).map_err(|e| UserCliError(e.to_string()))?;
                println!("{text}");
            } else {
                for u in &users {
                    let state = if u.enabled { "enabled" } else { "disabled" };
                    println!("{:<40} {:<9} {}", u.name, state, describe(&u.roles));
                }
            }
        }
    }
    Ok(())
}

fn describe(roles: &[String]) -> String {
    if roles.is_empty() { "none".into() } else { roles.join(", ") }
}

async fn set_roles(repo: &Repo, name: &str, roles: &[String]) -> Result<UserInfo, UserCliError> {
    let rows: Vec<_> = roles.iter().map(|r| serde_json::json!({"role": r})).collect();
    let body = serde_json::json!({"roles": rows});
    let doc = repo.update(&Principal::administrator(), USER_DOCTYPE, name, &body, &Expect::default()).await?;
    Ok(UserInfo::from_doc(&doc))
}

/// Every user, by name, with their roles.
async fn list(repo: &Repo) -> Result<Vec<UserInfo>, UserCliError> {
    let admin = Principal::administrator();
    let schema = repo.schema(USER_DOCTYPE)?;
    let page_size = repo.limits().max_page_size;
    let mut users = Vec::new();
    let mut offset = 0u32;
    loop {
        let pairs = vec![
            ("order_by".to_string(), "name asc".to_string()),
            ("limit".to_string(), page_size.to_string()),
            ("offset".to_string(), offset.to_string()),
            ("total".to_string(), "false".to_string()),
        ];
        let q = list_query::parse(&schema, &pairs, repo.limits()).map_err(|e| UserCliError(e.to_string()))?;
        let page = repo.list(&admin, USER_DOCTYPE, &q).await?;
        for doc in &page.rows {
            users.push(repo.user_info(doc.name()).await?);
        }
        if !page.has_more {
            break;
        }
        offset += page_size;
    }
    Ok(users)
}

/// A password from standard input: one line (prompted, when it is a terminal).
fn read_password() -> Result<String, UserCliError> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| UserCliError(format!("reading the password: {e}")))?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        return Err(UserCliError("no password given on standard input".into()));
    }
    Ok(password)
}
