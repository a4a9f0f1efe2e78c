//! `m user:*`: manage users from the command line, through the same services (and so the same
//! rules) as the API, acting as the Administrator. The server sees a change within a second.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::perms::Principal;
use crate::repo::{Expect, Repo, RepoError};
use crate::services::Runtime;
use crate::users::{USER_DOCTYPE, UserInfo, Users, normalise};

/// The user commands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum UserCommand {
    /// Create a user (`--password` or `--password-stdin` to let them log in; `--role` repeatable).
    #[command(name = "user:create")]
    Create {
        #[arg(long)]
        email: String,
        /// The password (visible in the process list while the command runs; prefer
        /// --password-stdin).
        #[arg(long)]
        password: Option<String>,
        /// Read the password from one line of standard input.
        #[arg(long, conflicts_with = "password")]
        password_stdin: bool,
        #[arg(long)]
        full_name: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Give a user a role.
    #[command(name = "user:add-role")]
    AddRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Take a role from a user (effective within a second).
    #[command(name = "user:remove-role")]
    RemoveRole {
        #[arg(long)]
        email: String,
        #[arg(long)]
        role: String,
    },
    /// Disable a user: their tokens stop working within a second.
    #[command(name = "user:disable")]
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled user.
    #[command(name = "user:enable")]
    Enable {
        #[arg(long)]
        email: String,
    },
    /// Set a user's password (from --password, or one line of standard input).
    #[command(name = "user:set-password")]
    SetPassword {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List users with their roles.
    #[command(name = "user:list")]
    List,
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

pub async fn run(cmd: UserCommand, rt: &Runtime, json: bool) -> Result<(), UserCliError> {
    let (repo, users) = (&rt.repo, &rt.users);
    let admin = Principal::administrator();
    let enabled = !matches!(cmd, UserCommand::Disable { .. });
    match cmd {
        UserCommand::Create { email, password, password_stdin, full_name, roles } => {
            let password = if password_stdin { Some(read_password()?) } else { password };
            if let Some(p) = &password {
                // Checked before the user exists, so a weak password leaves nothing behind.
                crate::users::hash_password(p).await?;
            }
            let email = normalise(&email);
            let roles: Vec<_> = roles.iter().map(|r| serde_json::json!({"role": r})).collect();
            let body = serde_json::json!({"email": email, "full_name": full_name, "roles": roles});
            let doc = repo.create(&admin, USER_DOCTYPE, &body).await?;
            if let Some(p) = &password {
                users.set_password(doc.name(), p).await?;
            }
            let info = UserInfo::from_doc(&doc);
            println!("created user {} (roles: {})", info.name, describe(&info.roles));
            if password.is_none() {
                println!("no password set: run `m user:set-password --email {}` to let them log in", info.name);
            }
        }
        UserCommand::AddRole { email, role } => {
            let info = users.user_info(&normalise(&email)).await?;
            if info.roles.contains(&role) {
                println!("{} already has role {role}", info.name);
                return Ok(());
            }
            let mut roles = info.roles.clone();
            roles.push(role);
            let info = set_roles(repo, &info.name, &roles).await?;
            println!("{}: roles {}", info.name, describe(&info.roles));
        }
        UserCommand::RemoveRole { email, role } => {
            let info = users.user_info(&normalise(&email)).await?;
            if !info.roles.contains(&role) {
                return Err(UserCliError(format!("{} does not have role {role}", info.name)));
            }
            let roles: Vec<String> = info.roles.iter().filter(|r| **r != role).cloned().collect();
            let info = set_roles(repo, &info.name, &roles).await?;
            println!("{}: roles {}", info.name, describe(&info.roles));
        }
        UserCommand::Disable { email } | UserCommand::Enable { email } => {
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
            users.set_password(&name, &password).await?;
            println!("password set for {name}");
        }
        UserCommand::List => {
            let listed = list(repo, users).await?;
            if json {
                let text = serde_json::to_string_pretty(&listed).map_err(|e| UserCliError(e.to_string()))?;
                println!("{text}");
            } else {
                for u in &listed {
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
async fn list(repo: &Repo, users: &Users) -> Result<Vec<UserInfo>, UserCliError> {
    let params = [("order_by".to_string(), "name asc".to_string())];
    let mut found = Vec::new();
    for doc in repo.list_all(&Principal::administrator(), USER_DOCTYPE, &params).await? {
        found.push(users.user_info(doc.name()).await?);
    }
    Ok(found)
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
