//! What `m migrate:*` and `m start` do with the chain: each command returns a report that prints
//! as text or JSON.

use std::collections::BTreeSet;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use m_schema::migrate::model::Schema;
use m_schema::migrate::{Chain, Class, Diff, Revision, diff, review_card};
use serde::Serialize;

use super::{MigrateError, Migrator, Source, desired_schema, err};
use crate::app::App;
use crate::config::{Config, Mode};

/// Everything a migration command needs.
pub struct Ctx {
    pub url: String,
    pub source: Source,
    pub desired: Schema,
    pub tool_version: String,
    pub timeouts: super::Timeouts,
    /// Row security policies (`M_DB_RLS`) for this build.
    pub rls: super::rls::Plan,
}

impl Ctx {
    /// Production reads only the embedded revisions; development reads `migrations/` from the
    /// source tree (or `M_MIGRATIONS_DIR`) when it is there.
    pub fn new(config: &Config, app: &App) -> Result<Ctx, MigrateError> {
        let source = match config.env {
            Mode::Production => Source::embedded(app.migrations),
            Mode::Development => {
                let dir: Option<PathBuf> = config.migrations_dir.clone().or_else(|| app.migrations_dir.clone());
                Source::resolve(app.migrations, dir.as_deref())?
            }
        };
        Ok(Ctx {
            url: config.database_url.expose().to_string(),
            source,
            desired: desired_schema(app)?,
            rls: super::rls::Plan::new(app, config.db_rls),
            tool_version: format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
            timeouts: super::Timeouts::from(config),
        })
    }

    pub fn chain(&self) -> Result<Chain, MigrateError> {
        Ok(Chain::load(&self.source.files)?)
    }

    pub async fn migrator(&self) -> Result<Migrator, MigrateError> {
        Migrator::open(&self.url, self.source.clone(), &self.tool_version, self.timeouts).await
    }

    /// A warning when disk and binary disagree (development).
    pub fn disk_warning(&self) -> Option<String> {
        if self.source.differs_from_binary.is_empty() {
            return None;
        }
        Some(format!(
            "migrations/ on disk differs from the revisions built into this binary: {} (disk is used; rebuild to embed them)",
            self.source.differs_from_binary.join(", ")
        ))
    }
}

/// Changes of the DocTypes not yet in any revision.
pub fn ungenerated(chain: &Chain, desired: &Schema) -> Result<Diff, MigrateError> {
    let current = chain.replay()?;
    diff(&current, desired).map_err(|e| err(e.0))
}

/// A sortable, unique revision id: the UTC time to the second, or one second after the newest
/// revision when that one is later (a clock behind, or ids from the future).
fn new_id(chain: &Chain) -> String {
    let now = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
    let Some(newest) = chain.revisions.iter().map(|r| r.revision.id.clone()).max() else { return now };
    if now > newest {
        return now;
    }
    match chrono::NaiveDateTime::parse_from_str(&newest, "%Y%m%d%H%M%S") {
        Ok(t) => (t + chrono::Duration::seconds(1)).format("%Y%m%d%H%M%S").to_string(),
        Err(_) => format!("{newest}1"),
    }
}

fn slug(name: &str) -> Result<String, MigrateError> {
    let s: String = name
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
        .collect::<String>()
        .split('_')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("_");
    if s.is_empty() || s.len() > 80 {
        return Err(err("the revision name must have 1 to 80 letters, digits or underscores"));
    }
    Ok(s)
}

/// What `m migrate:create` wrote.
#[derive(Debug, Serialize)]
pub struct Created {
    pub file: Option<String>,
    pub class: Option<Class>,
    pub message: String,
    #[serde(skip)]
    pub card: String,
}

/// Write a revision for the DocType changes (or a merge of the heads) into the source tree.
pub fn create(ctx: &Ctx, name: &str, merge: bool, color: bool) -> Result<Created, MigrateError> {
    let dir = ctx.source.dir.clone().ok_or_else(|| {
        err("no migrations/ folder: run this from the application's source tree, or set M_MIGRATIONS_DIR")
    })?;
    let chain = ctx.chain()?;
    let heads = chain.heads();
    let rev = if merge {
        if heads.len() < 2 {
            return Ok(Created {
                file: None,
                class: None,
                message: "one head: nothing to merge".into(),
                card: String::new(),
            });
        }
        if heads.len() > 2 {
            return Err(err("more than two heads: merge two at a time (not supported yet with three or more)"));
        }
        let (a, b) = (&heads[0].revision.id, &heads[1].revision.id);
        let base: BTreeSet<String> = chain.ancestors(a).intersection(&chain.ancestors(b)).cloned().collect();
        let clash = Chain::conflicts(&chain.touched_since(a, &base), &chain.touched_since(b, &base));
        if !clash.is_empty() {
            return Err(err(format!(
                "the heads {} and {} both change {}: they cannot be merged automatically; rewrite one branch's revision on top of the other",
                heads[0].file,
                heads[1].file,
                clash.join(", ")
            )));
        }
        let id = new_id(&chain);
        Revision::new(&id, &slug(name)?, &now(), vec![a.clone(), b.clone()], Diff::default())
    } else {
        if heads.len() > 1 {
            return Err(err(format!(
                "the chain has {} heads: run `m migrate:create --merge <name>` first",
                heads.len()
            )));
        }
        let d = ungenerated(&chain, &ctx.desired)?;
        if d.is_empty() {
            return Ok(Created {
                file: None,
                class: None,
                message: "no changes: the DocTypes match the revisions".into(),
                card: String::new(),
            });
        }
        let id = new_id(&chain);
        let parents = heads.first().map(|h| vec![h.revision.id.clone()]).unwrap_or_default();
        Revision::new(&id, &slug(name)?, &now(), parents, d)
    };
    write_revision(&dir, &rev)?;
    Ok(Created {
        file: Some(format!("migrations/{}", rev.file_name())),
        class: Some(rev.class),
        message: format!("wrote migrations/{}", rev.file_name()),
        card: review_card(&rev, color),
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn write_revision(dir: &std::path::Path, rev: &Revision) -> Result<(), MigrateError> {
    std::fs::create_dir_all(dir).map_err(|e| err(format!("cannot create {}: {e}", dir.display())))?;
    let path = dir.join(rev.file_name());
    std::fs::write(&path, rev.to_toml()).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// `m migrate:status`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub source: String,
    pub applied: Vec<super::Applied>,
    pub pending: Vec<PendingRevision>,
    pub heads: Vec<String>,
    pub ungenerated: Vec<String>,
    pub disk_differs: Vec<String>,
    pub drift: Option<Vec<String>>,
    /// With `--live`: rows whose Select value the DocTypes no longer allow.
    pub invalid_values: Option<Vec<String>>,
    #[serde(skip)]
    pub cards: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PendingRevision {
    pub id: String,
    pub file: String,
    pub class: Class,
    pub unacknowledged: Vec<String>,
}

pub async fn status(ctx: &Ctx, live: bool, color: bool) -> Result<Status, MigrateError> {
    let mut m = ctx.migrator().await?;
    let result = async {
        let history = m.verify().await?;
        let mut pending = Vec::new();
        let mut cards = Vec::new();
        for r in m.pending(&history) {
            let a = m.chain.analyze(&r.revision.id)?;
            let mut shown = r.revision.clone();
            shown.up.clone_from(&a.up);
            shown.class = a.class;
            cards.push(review_card(&shown, color));
            pending.push(PendingRevision {
                id: r.revision.id.clone(),
                file: r.file.clone(),
                class: a.class,
                unacknowledged: a.unacknowledged,
            });
        }
        let d = ungenerated(&m.chain, &ctx.desired)?;
        let ungenerated: Vec<String> = if d.is_empty() {
            Vec::new()
        } else {
            d.up.iter().map(|s| format!("{} {} {}", s.class, s.code, s.reason)).collect()
        };
        let (drift, invalid_values) = if live {
            let ids: BTreeSet<String> = history.iter().filter(|h| h.state == "applied").map(|h| h.id.clone()).collect();
            let expected = m.chain.replay_set(&ids)?;
            let drift = super::live::drift(m.conn().await, &expected).await?;
            (Some(drift), Some(super::live::invalid_values(m.conn().await, &ctx.desired).await?))
        } else {
            (None, None)
        };
        Ok(Status {
            source: match &ctx.source.dir {
                Some(d) => d.display().to_string(),
                None => "embedded".into(),
            },
            applied: history,
            pending,
            heads: m.chain.heads().iter().map(|h| h.file.clone()).collect(),
            ungenerated,
            disk_differs: ctx.source.differs_from_binary.clone(),
            drift,
            invalid_values,
            cards,
        })
    }
    .await;
    m.close().await;
    result
}

/// Whether to color output: a terminal, and NO_COLOR unset.
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A development start: apply pending SAFE revisions; write and apply an `_auto` revision for
/// SAFE DocType changes; report what it did not apply and why. Returns the revisions the
/// database has applied.
pub async fn development_start(ctx: &Ctx) -> Result<Vec<String>, MigrateError> {
    if let Some(w) = ctx.disk_warning() {
        tracing::warn!("{w}");
    }
    let mut m = ctx.migrator().await?;
    let result = async {
        let history = m.verify().await?;
        let heads = m.chain.heads();
        if heads.len() > 1 {
            let names: Vec<String> = heads.iter().map(|h| h.file.clone()).collect();
            return Err(err(format!(
                "the migration chain has several heads ({}): run `m migrate:create --merge <name>`",
                names.join(", ")
            )));
        }
        let mut blocked = Vec::new();
        for r in m.pending(&history) {
            let a = m.chain.analyze(&r.revision.id)?;
            if a.class > Class::Safe {
                let mut shown = r.revision.clone();
                shown.up.clone_from(&a.up);
                shown.class = a.class;
                blocked.push(review_card(&shown, false));
            }
        }
        if !blocked.is_empty() {
            tracing::warn!(
                "pending revisions are not SAFE and were not applied (review them, then run `m migrate`):\n{}",
                blocked.join("\n")
            );
            return Ok(());
        }
        let applied = m.migrate(true).await?;
        if !applied.is_empty() {
            tracing::info!(revisions = ?applied, "applied pending SAFE revisions (development)");
        }
        let d = ungenerated(&m.chain, &ctx.desired)?;
        if d.is_empty() {
            return Ok(());
        }
        let class = m_schema::migrate::classify::max_class(&d.up);
        let chain = m.chain.clone();
        let parents = chain.heads().first().map(|h| vec![h.revision.id.clone()]).unwrap_or_default();
        let rev = Revision::new(&new_id(&chain), "auto", &now(), parents, d);
        match (&ctx.source.dir, class) {
            (Some(dir), Class::Safe) => {
                write_revision(dir, &rev)?;
                tracing::info!("wrote migrations/{} for the DocType changes (all SAFE):\n{}", rev.file_name(), review_card(&rev, false));
                let source = Source::resolve(&[], Some(dir))?;
                m.chain = Chain::load(&source.files)?;
                m.source = source;
                let applied = m.migrate(true).await?;
                tracing::info!(revisions = ?applied, "applied (development)");
            }
            (None, _) => tracing::warn!(
                "the DocTypes changed without a revision and there is no migrations/ folder to write one into; these changes are not applied:\n{}",
                review_card(&rev, false)
            ),
            (Some(_), _) => tracing::warn!(
                "the DocTypes changed in ways that are not SAFE; nothing was applied. Run `m migrate:create <name>`, review, then `m migrate`:\n{}",
                review_card(&rev, false)
            ),
        }
        Ok(())
    }
    .await;
    let result = match result {
        Ok(()) => super::rls::sync(m.conn().await, &ctx.rls).await.map(|changed| {
            if !changed.is_empty() {
                tracing::info!(tables = ?changed, on = ctx.rls.on, "row security policies updated (M_DB_RLS)");
            }
        }),
        Err(e) => Err(e),
    };
    let applied = match result {
        Ok(()) => m.history().await.map(|h| h.into_iter().filter(|r| r.state == "applied").map(|r| r.id).collect()),
        Err(e) => Err(e),
    };
    m.close().await;
    applied
}

/// A production start: never migrates; refuses pending, failed or edited revisions and DocType
/// changes without a revision. Returns the revisions the database has applied.
pub async fn production_check(ctx: &Ctx) -> Result<Vec<String>, MigrateError> {
    let mut m = ctx.migrator().await?;
    let result = async {
        let history = m.verify().await?;
        let pending: Vec<String> = m.pending(&history).iter().map(|r| r.file.clone()).collect();
        if !pending.is_empty() {
            return Err(err(format!(
                "{} pending revision(s) ({}): run `m migrate` before starting in production",
                pending.len(),
                pending.join(", ")
            )));
        }
        let d = ungenerated(&m.chain, &ctx.desired)?;
        if !d.is_empty() {
            return Err(err(
                "the DocTypes of this build have changes that no revision contains: run `m migrate:create <name>`, rebuild and deploy with the revision",
            ));
        }
        super::rls::check(m.conn().await, &ctx.rls).await?;
        Ok(m.chain.revisions.iter().map(|r| r.revision.id.clone()).collect())
    }
    .await;
    m.close().await;
    result
}
