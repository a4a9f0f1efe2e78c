//! Configuration: defaults < `m.toml` < environment (`M_…`, plus `DATABASE_URL` and `REDIS_URL`).
//! Parsed once into typed values (modes, formats, origins, networks); secrets are wrapped so
//! `Debug` never prints them. A leaf: it imports nothing of the crate, and each subsystem builds
//! its own settings from it (`From<&Config>`).

use std::fmt;
use std::net::IpAddr;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret string: never shown by `Debug` or `Display`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Development,
    Production,
}

/// The log line format (`M_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Text,
}

/// A browser origin allowed by CORS: `scheme://host[:port]`, no path, never `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    pub fn parse(s: &str) -> Result<Origin, String> {
        let s = s.trim();
        let ok = (s.starts_with("https://") || s.starts_with("http://"))
            && !s.ends_with('/')
            && s.split("://").nth(1).is_some_and(|h| !h.is_empty() && !h.contains('/') && !h.contains('*'));
        if ok {
            Ok(Origin(s.to_string()))
        } else {
            Err(format!("`{s}` is not an origin (scheme://host[:port], no path, no `*`)"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A network: an address and a prefix length (`10.0.0.0/8`, `192.168.1.5`, `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(s: &str) -> Option<Net> {
        let (ip, prefix) = match s.trim().split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Net { addr: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> (u128, u32) {
            match a {
                IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (addr, w2)) = (bits(self.addr), bits(ip));
        if width != w2 {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        if shift >= 128 {
            return true;
        }
        (net >> shift) == (addr >> shift)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte (port 465 by default).
    Implicit,
    /// `smtp://` to any other host: STARTTLS, required (port 587 by default).
    StartTls,
    /// `smtp://` to a loopback host: no TLS (a local relay; port 25 by default).
    None,
}

/// `M_SMTP_URL`: `smtps://user:password@host[:465]`, `smtp://[user:password@]host[:587]`
/// (STARTTLS required), or `smtp://localhost[:25]` (plain: loopback hosts only).
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub tls: SmtpTls,
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<Secret>,
    text: String,
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl").field("tls", &self.tls).field("host", &self.host).field("port", &self.port).finish()
    }
}

fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl SmtpUrl {
    pub fn parse(s: &str) -> Result<SmtpUrl, String> {
        let url = reqwest::Url::parse(s.trim()).map_err(|e| format!("M_SMTP_URL is not a URL: {e}"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("M_SMTP_URL has no host")?.to_string();
        let tls = match url.scheme() {
            "smtps" => SmtpTls::Implicit,
            "smtp" if is_loopback_host(&host) => SmtpTls::None,
            "smtp" => SmtpTls::StartTls,
            other => return Err(format!("M_SMTP_URL: use smtps:// or smtp://, not {other}://")),
        };
        let port = url.port().unwrap_or(match tls {
            SmtpTls::Implicit => 465,
            SmtpTls::StartTls => 587,
            SmtpTls::None => 25,
        });
        let decode = |v: &str| percent_decode(v);
        let user = Some(url.username()).filter(|u| !u.is_empty()).map(decode);
        let password = url.password().map(|p| Secret::new(decode(p)));
        Ok(SmtpUrl { tls, host, port, user, password, text: s.trim().to_string() })
    }
}

/// `%xx` escapes decoded (user names and passwords in URLs).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn de_smtp<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SmtpUrl>, D::Error> {
    match Option::<String>::deserialize(d)? {
        Some(s) if !s.trim().is_empty() => SmtpUrl::parse(&s).map(Some).map_err(serde::de::Error::custom),
        _ => Ok(None),
    }
}

fn ser_smtp<S: Serializer>(v: &Option<SmtpUrl>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(u) => s.serialize_some(&u.text),
        None => s.serialize_none(),
    }
}

/// A list setting: a comma-separated string (the environment) or an array (`m.toml`).
fn list_items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Items {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Items>::deserialize(d)? {
        None => Vec::new(),
        Some(Items::One(s)) => s.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect(),
        Some(Items::Many(v)) => v,
    })
}

fn de_origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Origin>, D::Error> {
    list_items(d)?.iter().map(|s| Origin::parse(s).map_err(serde::de::Error::custom)).collect()
}

fn ser_origins<S: Serializer>(v: &[Origin], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(Origin::as_str))
}

fn de_nets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Net>, D::Error> {
    list_items(d)?
        .iter()
        .map(|s| {
            Net::parse(s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not an address or a CIDR network")))
        })
        .collect()
}

fn ser_nets<S: Serializer>(v: &[Net], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(Net::to_string))
}

/// `on` / `off` (or a boolean).
fn de_switch<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Switch {
        Bool(bool),
        Word(String),
    }
    match Switch::deserialize(d)? {
        Switch::Bool(b) => Ok(b),
        Switch::Word(w) if w == "on" => Ok(true),
        Switch::Word(w) if w == "off" => Ok(false),
        Switch::Word(w) => Err(serde::de::Error::custom(format!("must be `on` or `off`, not `{w}`"))),
    }
}

fn ser_switch<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *v { "on" } else { "off" })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `development` (default) or `production` (`M_ENV`).
    pub env: Mode,
    pub host: IpAddr,
    pub port: u16,
    /// `postgres://…` or `sqlite://path` (`DATABASE_URL`).
    pub database_url: Secret,
    /// Redis (optional; `REDIS_URL`).
    pub redis_url: Option<Secret>,
    /// HS256 key for bearer tokens (`M_JWT_SECRET`).
    pub jwt_secret: Option<Secret>,
    /// Encrypts Password fields at rest (`M_ENCRYPTION_KEY`; production needs it, at least 32
    /// bytes, when a DocType has a Password field).
    pub encryption_key: Option<Secret>,
    /// JWKS with RS256 / ES256 / EdDSA public keys (`M_JWT_JWKS_URL`: `https://…`, `file://…` or
    /// a path; `http://…` in development only); used instead of `M_JWT_SECRET` when set.
    pub jwt_jwks_url: Option<String>,
    /// Required `iss` and `aud` of tokens, when set (`M_JWT_ISSUER`, `M_JWT_AUDIENCE`).
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub max_page_size: u32,
    pub max_body_bytes: usize,
    pub max_fields: usize,
    pub max_filters: usize,
    pub max_in_values: usize,
    pub db_max_connections: usize,
    pub db_min_connections: usize,
    pub db_acquire_timeout_secs: u64,
    pub db_max_lifetime_secs: u64,
    pub sqlite_readers: usize,
    /// PostgreSQL statement timeout in seconds (`M_STATEMENT_TIMEOUT_SECS`).
    pub statement_timeout_secs: u64,
    /// Where revisions are read and written in development (`M_MIGRATIONS_DIR`; default: the
    /// application's `migrations/` when its source tree is present). Production reads only the
    /// revisions embedded in the binary.
    pub migrations_dir: Option<std::path::PathBuf>,
    /// Statements at least this slow are logged as warnings (`M_SLOW_QUERY_MS`).
    pub slow_query_ms: u64,
    /// `json` or `text` (`M_LOG_FORMAT`); default JSON lines in production, text in development.
    pub log_format: Option<LogFormat>,
    /// Zipkin collector URL for trace export (`M_ZIPKIN_ENDPOINT`), e.g.
    /// `http://zipkin:9411/api/v2/spans`. OTLP export follows `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub zipkin_endpoint: Option<String>,
    /// Requests per minute per user (`M_RATE_LIMIT_API`) and per client address without a valid
    /// token (`M_RATE_LIMIT_ANON`).
    pub rate_limit_api: u32,
    pub rate_limit_anon: u32,
    /// Serve HTTPS with this PEM certificate chain and private key (`M_TLS_CERT`, `M_TLS_KEY`).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// `on`: the row scope is also enforced by PostgreSQL row security policies (`M_DB_RLS`).
    #[serde(deserialize_with = "de_switch", serialize_with = "ser_switch")]
    pub db_rls: bool,
    /// Login attempts per minute, per account and per client address (`M_RATE_LIMIT_LOGIN`).
    pub rate_limit_login: u32,
    /// Lifetime of a token issued by the login, in seconds (`M_JWT_TTL_SECS`).
    pub jwt_ttl_secs: u64,
    /// Prefix of this deployment's Redis keys (`M_REDIS_PREFIX`).
    pub redis_prefix: String,
    /// Origins allowed to call the API from a browser, exact (`M_CORS_ORIGINS`, comma-separated).
    #[serde(deserialize_with = "de_origins", serialize_with = "ser_origins")]
    pub cors_origins: Vec<Origin>,
    /// Proxies whose `X-Forwarded-Proto` / `X-Forwarded-Host` are believed: addresses or CIDR
    /// networks, comma-separated (`M_TRUSTED_PROXIES`).
    #[serde(deserialize_with = "de_nets", serialize_with = "ser_nets")]
    pub trusted_proxies: Vec<Net>,
    /// Longest accepted URL (path and query) and total header size, in bytes.
    pub max_url_bytes: usize,
    pub max_header_bytes: usize,
    /// Serve `/metrics` on this address instead of the main listener (`M_METRICS_ADDR`).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// A request running longer is answered 504 (`M_REQUEST_TIMEOUT_SECS`).
    pub request_timeout_secs: u64,
    /// Requests in flight at once; more are answered 503 at once (`M_MAX_CONCURRENT_REQUESTS`).
    pub max_concurrent_requests: usize,
    /// After SIGTERM / ctrl-c, how long in-flight requests may take (`M_SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout_secs: u64,
    /// Migration sessions on PostgreSQL: `lock_timeout` and `statement_timeout` in seconds.
    pub migrate_lock_timeout_secs: u64,
    pub migrate_statement_timeout_secs: u64,
    /// Background jobs run at once by `m start` (`M_JOB_WORKERS`; 0: this server runs none, an
    /// `m worker` process does) and by `m worker` unless `--concurrency` says otherwise.
    pub job_workers: usize,
    /// A job running longer is stopped and counts as a failed attempt (`M_JOB_TIMEOUT_SECS`).
    pub job_timeout_secs: u64,
    /// Attempts a job gets before it is marked failed (`M_JOB_ATTEMPTS`).
    pub job_attempts: u32,
    /// Wait before the first retry, doubled for each further one up to an hour
    /// (`M_JOB_BACKOFF_SECS`).
    pub job_backoff_secs: u64,
    /// Done jobs are deleted after this many seconds (`M_JOB_KEEP_SECS`); failed ones stay.
    pub job_keep_secs: u64,
    /// A webhook request answering later than this fails its attempt (`M_WEBHOOK_TIMEOUT_SECS`).
    pub webhook_timeout_secs: u64,
    /// Hosts webhooks may reach whatever they resolve to — loopback, private and link-local
    /// addresses are refused otherwise (`M_WEBHOOK_ALLOW_HOSTS`, comma-separated, as written
    /// in URLs).
    #[serde(deserialize_with = "list_items")]
    pub webhook_allow_hosts: Vec<String>,
    /// Where email is sent (`M_SMTP_URL`; see [`SmtpUrl`]). Without it, development writes each
    /// message as an `.eml` file under `M_MAIL_DIR`; production keeps it queued, failed with
    /// `smtp_not_configured`.
    #[serde(deserialize_with = "de_smtp", serialize_with = "ser_smtp")]
    pub smtp_url: Option<SmtpUrl>,
    /// The sender of outgoing email (`M_MAIL_FROM`, e.g. `Acme <billing@acme.example>`).
    pub mail_from: Option<String>,
    /// Where development writes email when no SMTP server is configured (`M_MAIL_DIR`).
    pub mail_dir: std::path::PathBuf,
    /// An SMTP exchange taking longer fails its attempt (`M_SMTP_TIMEOUT_SECS`).
    pub smtp_timeout_secs: u64,
    /// Gotenberg, which turns printed HTML into PDF (`M_GOTENBERG_URL`, e.g.
    /// `http://gotenberg:3000`). Without it, `format=pdf` answers 503 `print_unavailable`.
    pub gotenberg_url: Option<String>,
    /// A PDF taking longer is answered 504 (`M_PRINT_TIMEOUT_SECS`).
    pub print_timeout_secs: u64,
    /// Versions older than this many days are deleted by the job workers' upkeep
    /// (`M_VERSION_KEEP_DAYS`; 0, the default: kept until deleted).
    pub version_keep_days: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            env: Mode::Development,
            host: IpAddr::from([127, 0, 0, 1]),
            port: 8000,
            database_url: Secret::new("sqlite://data/m.db"),
            redis_url: None,
            jwt_secret: None,
            encryption_key: None,
            jwt_jwks_url: None,
            jwt_issuer: None,
            jwt_audience: None,
            max_page_size: 500,
            max_body_bytes: 1 << 20,
            max_fields: 100,
            max_filters: 50,
            max_in_values: 1000,
            db_max_connections: 30,
            db_min_connections: 20,
            db_acquire_timeout_secs: 30,
            db_max_lifetime_secs: 3600,
            sqlite_readers: 4,
            statement_timeout_secs: 10,
            migrations_dir: None,
            slow_query_ms: 500,
            log_format: None,
            zipkin_endpoint: None,
            rate_limit_api: 600,
            rate_limit_anon: 60,
            rate_limit_login: 10,
            db_rls: false,
            tls_cert: None,
            tls_key: None,
            jwt_ttl_secs: 3600,
            redis_prefix: "m:".into(),
            cors_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            max_url_bytes: 8 * 1024,
            max_header_bytes: 32 * 1024,
            metrics_addr: None,
            request_timeout_secs: 30,
            max_concurrent_requests: 512,
            shutdown_timeout_secs: 30,
            migrate_lock_timeout_secs: 10,
            migrate_statement_timeout_secs: 600,
            job_workers: 2,
            job_timeout_secs: 300,
            job_attempts: 3,
            job_backoff_secs: 10,
            job_keep_secs: 7 * 24 * 3600,
            webhook_timeout_secs: 10,
            webhook_allow_hosts: Vec::new(),
            smtp_url: None,
            mail_from: None,
            mail_dir: "data/mail".into(),
            smtp_timeout_secs: 30,
            gotenberg_url: None,
            print_timeout_secs: 30,
            version_keep_days: 0,
        }
    }
}

/// The configuration keys read from `M_<KEY>` (other `M_` variables belong to other tools).
const ENV_KEYS: &[&str] = &[
    "env",
    "host",
    "port",
    "jwt_secret",
    "encryption_key",
    "jwt_jwks_url",
    "jwt_issuer",
    "jwt_audience",
    "max_page_size",
    "max_body_bytes",
    "max_fields",
    "max_filters",
    "max_in_values",
    "db_max_connections",
    "db_min_connections",
    "db_acquire_timeout_secs",
    "db_max_lifetime_secs",
    "sqlite_readers",
    "statement_timeout_secs",
    "migrations_dir",
    "request_timeout_secs",
    "metrics_addr",
    "zipkin_endpoint",
    "cors_origins",
    "rate_limit_api",
    "rate_limit_anon",
    "rate_limit_login",
    "db_rls",
    "tls_cert",
    "tls_key",
    "jwt_ttl_secs",
    "redis_prefix",
    "trusted_proxies",
    "max_url_bytes",
    "max_header_bytes",
    "slow_query_ms",
    "log_format",
    "max_concurrent_requests",
    "shutdown_timeout_secs",
    "migrate_lock_timeout_secs",
    "migrate_statement_timeout_secs",
    "job_workers",
    "job_timeout_secs",
    "job_attempts",
    "job_backoff_secs",
    "job_keep_secs",
    "webhook_timeout_secs",
    "webhook_allow_hosts",
    "smtp_url",
    "mail_from",
    "mail_dir",
    "smtp_timeout_secs",
    "gotenberg_url",
    "print_timeout_secs",
    "version_keep_days",
];

impl Config {
    /// Load defaults, then `m.toml` in the working directory (if present), then the environment,
    /// parsed into typed values. [`Config::check`] (the rules between settings, and production's)
    /// runs again wherever a server or a command is opened, after command-line overrides.
    pub fn load() -> Result<Config, String> {
        let figment = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file("m.toml"))
            .merge(Env::prefixed("M_").only(ENV_KEYS))
            .merge(Env::raw().only(&["database_url", "redis_url"]));
        figment.extract().map_err(|e| format!("invalid configuration: {e}"))
    }

    /// Refuse configurations that cannot run (production without a strong secret, zero sizes).
    pub fn check(&self) -> Result<(), String> {
        if self.max_page_size == 0 {
            return Err("M_MAX_PAGE_SIZE must be at least 1".into());
        }
        if self.job_attempts == 0 || self.job_timeout_secs == 0 {
            return Err("M_JOB_ATTEMPTS and M_JOB_TIMEOUT_SECS must be at least 1".into());
        }
        if self.job_timeout_secs > 30 * 24 * 3600 {
            return Err("M_JOB_TIMEOUT_SECS is at most 2592000 (30 days)".into());
        }
        if self.rate_limit_api == 0 || self.rate_limit_anon == 0 || self.rate_limit_login == 0 {
            return Err("M_RATE_LIMIT_API, M_RATE_LIMIT_ANON and M_RATE_LIMIT_LOGIN must be at least 1".into());
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("M_TLS_CERT and M_TLS_KEY go together (a PEM certificate chain and its private key)".into());
        }
        if self.db_rls && !self.database_url.expose().starts_with("postgres") {
            return Err("M_DB_RLS=on needs PostgreSQL (row security policies)".into());
        }
        if self.jwt_ttl_secs == 0 {
            return Err("M_JWT_TTL_SECS must be at least 1".into());
        }
        if self.request_timeout_secs == 0 || self.max_concurrent_requests == 0 {
            return Err("M_REQUEST_TIMEOUT_SECS and M_MAX_CONCURRENT_REQUESTS must be at least 1".into());
        }
        if self.webhook_timeout_secs == 0 || self.smtp_timeout_secs == 0 {
            return Err("M_WEBHOOK_TIMEOUT_SECS and M_SMTP_TIMEOUT_SECS must be at least 1".into());
        }
        if self.print_timeout_secs == 0 {
            return Err("M_PRINT_TIMEOUT_SECS must be at least 1".into());
        }
        if let Some(url) = &self.gotenberg_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("M_GOTENBERG_URL `{url}` is not an http(s) URL"));
        }
        if self.smtp_url.is_some() && self.mail_from.as_deref().is_none_or(|f| f.trim().is_empty()) {
            return Err("M_SMTP_URL needs M_MAIL_FROM (the sender of outgoing email)".into());
        }
        if self.db_max_connections == 0 {
            return Err("M_DB_MAX_CONNECTIONS must be at least 1".into());
        }
        if self.env == Mode::Production {
            match (&self.jwt_secret, &self.jwt_jwks_url) {
                (_, Some(_)) => {}
                (Some(s), None) if s.expose().len() >= 32 => {}
                _ => return Err("production needs M_JWT_SECRET of at least 32 bytes, or M_JWT_JWKS_URL".into()),
            }
            if self.encryption_key.as_ref().is_some_and(|k| k.expose().len() < 32) {
                return Err("M_ENCRYPTION_KEY must be at least 32 bytes in production".into());
            }
            // Keys fetched over plain HTTP could be swapped by anyone on the path.
            if let Some(url) = &self.jwt_jwks_url
                && url.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("http://"))
            {
                return Err("production refuses M_JWT_JWKS_URL over plain http://: use https:// or a file".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let tls = SmtpUrl::parse("smtps://me%40x.io:p%40ss@mail.example.com").unwrap();
        assert_eq!((tls.tls, tls.port, tls.user.as_deref()), (SmtpTls::Implicit, 465, Some("me@x.io")));
        assert_eq!(tls.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert!(!format!("{tls:?}").contains("p@ss"));
        let start = SmtpUrl::parse("smtp://mail.example.com").unwrap();
        assert_eq!((start.tls, start.port), (SmtpTls::StartTls, 587), "plain only to a loopback host");
        let local = SmtpUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert_eq!((local.tls, local.port), (SmtpTls::None, 2525));
        assert_eq!(SmtpUrl::parse("smtp://localhost").unwrap().tls, SmtpTls::None);
        assert!(SmtpUrl::parse("http://mail.example.com").is_err());
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let c = Config { jwt_secret: Some(Secret::new("super-secret-value")), ..Config::default() };
        let text = format!("{c:?}");
        assert!(!text.contains("super-secret-value"));
    }
}
