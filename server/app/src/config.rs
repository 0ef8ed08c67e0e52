//! Server configuration: embedded defaults, then a TOML file, then `EDDY_*` environment variables. Every problem
//! is reported at once. The config says how the host provides for jobs; what a job wants is in its spec.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A tenant and the hash of its API token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name, as it appears in routes (`/v1/tenants/{name}/...`).
    pub name: String,
    /// Hex SHA-256 of the tenant's bearer token (`eddy token hash <token>` prints it). Tokens are never stored.
    pub token_sha256: String,
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Where modules, job definitions and compiled code live.
    pub data_dir: PathBuf,
    /// Largest module upload, in bytes.
    pub max_module_bytes: usize,
    /// Linear-memory limit of each function instance, in MiB.
    pub instance_memory_mb: usize,
    /// CPU time limit of each call into a function.
    pub call_timeout: Duration,
    /// Tenants and their tokens; none means the open single-tenant mode (loopback only).
    pub tenants: Vec<TenantConfig>,
    /// Hex SHA-256 of the admin token, which may act on any tenant.
    pub admin_token_sha256: Option<String>,
}

/// The name of the tenant in open mode.
pub const DEFAULT_TENANT: &str = "default";

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".eddy"),
            max_module_bytes: 64 << 20,
            instance_memory_mb: 256,
            call_timeout: Duration::from_secs(10),
            tenants: Vec::new(),
            admin_token_sha256: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    max_module_bytes: Option<usize>,
    instance_memory_mb: Option<usize>,
    call_timeout_ms: Option<u64>,
    #[serde(default)]
    tenants: Vec<TenantConfig>,
    admin_token_sha256: Option<String>,
}

impl ServerConfig {
    /// Defaults, then `file` (if any), then environment variables read through `env`.
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<ServerConfig, Vec<String>> {
        let mut errors = Vec::new();
        let mut config = ServerConfig::default();
        let mut raw = FileConfig::default();
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => match toml::from_str::<FileConfig>(&text) {
                    Ok(parsed) => raw = parsed,
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                },
                Err(e) => errors.push(format!("cannot read {}: {e}", path.display())),
            }
        }
        let pick = |name: &str, from_file: Option<String>| env(name).or(from_file);
        if let Some(listen) = pick("EDDY_LISTEN", raw.listen) {
            match listen.parse() {
                Ok(addr) => config.listen = addr,
                Err(_) => errors.push(format!("listen: `{listen}` is not an address such as 127.0.0.1:8080")),
            }
        }
        if let Some(dir) = env("EDDY_DATA_DIR").map(PathBuf::from).or(raw.data_dir) {
            config.data_dir = dir;
        }
        let mut number = |name: &str, field: &str, from_file: Option<u64>, min: u64| -> Option<u64> {
            match env(name) {
                Some(text) => match text.parse::<u64>() {
                    Ok(n) if n >= min => Some(n),
                    _ => {
                        errors.push(format!("{name}: `{text}` must be a whole number of at least {min}"));
                        None
                    }
                },
                None => match from_file {
                    Some(n) if n < min => {
                        errors.push(format!("{field}: must be at least {min}"));
                        None
                    }
                    other => other,
                },
            }
        };
        if let Some(n) =
            number("EDDY_MAX_MODULE_BYTES", "max_module_bytes", raw.max_module_bytes.map(|n| n as u64), 1024)
        {
            config.max_module_bytes = n as usize;
        }
        if let Some(n) =
            number("EDDY_INSTANCE_MEMORY_MB", "instance_memory_mb", raw.instance_memory_mb.map(|n| n as u64), 1)
        {
            config.instance_memory_mb = n as usize;
        }
        if let Some(n) = number("EDDY_CALL_TIMEOUT_MS", "call_timeout_ms", raw.call_timeout_ms, 10) {
            config.call_timeout = Duration::from_millis(n);
        }
        config.tenants = raw.tenants;
        if let Some(list) = env("EDDY_TENANTS") {
            for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
                match entry.split_once(':') {
                    Some((name, hash)) => config
                        .tenants
                        .push(TenantConfig { name: name.trim().to_string(), token_sha256: hash.trim().to_string() }),
                    None => errors.push(format!("EDDY_TENANTS: `{entry}` is not name:token_sha256")),
                }
            }
        }
        config.admin_token_sha256 = env("EDDY_ADMIN_TOKEN_SHA256").or(raw.admin_token_sha256);
        errors.extend(config.check());
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    }

    /// Problems with a config, all of them.
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let is_hash = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        for tenant in &self.tenants {
            if !eddy_name_ok(&tenant.name) {
                errors.push(format!("tenant `{}`: names are letters, digits, '-' or '_'", tenant.name));
            }
            if !is_hash(&tenant.token_sha256) {
                errors.push(format!(
                    "tenant `{}`: token_sha256 must be 64 hex digits (run `eddy token hash <token>`)",
                    tenant.name
                ));
            }
        }
        let mut names: Vec<&str> = self.tenants.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            errors.push("two tenants have the same name".to_string());
        }
        if let Some(admin) = &self.admin_token_sha256
            && !is_hash(admin)
        {
            errors.push("admin_token_sha256 must be 64 hex digits".to_string());
        }
        if self.open_mode() && !self.listen.ip().is_loopback() {
            errors.push(format!(
                "listening on {} without tenants would let anyone on the network in: configure tenants with tokens, \
                 or listen on 127.0.0.1",
                self.listen
            ));
        }
        errors
    }

    /// Whether the server runs without tokens, as the single tenant `default`.
    pub fn open_mode(&self) -> bool {
        self.tenants.is_empty() && self.admin_token_sha256.is_none()
    }
}

/// Names of tenants, modules and operators: letters, digits, '-' or '_', at most 100.
pub fn eddy_name_ok(text: &str) -> bool {
    !text.is_empty() && text.len() <= 100 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn layers_defaults_file_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("eddy.toml");
        std::fs::write(
            &file,
            format!(
                "listen = \"127.0.0.1:9000\"\ninstance_memory_mb = 64\n[[tenants]]\nname = \"acme\"\ntoken_sha256 = \"{}\"\n",
                token_hash("secret")
            ),
        )
        .expect("write");
        let config = ServerConfig::load(Some(&file), env(&[("EDDY_LISTEN", "127.0.0.1:9100")])).expect("valid");
        assert_eq!(config.listen.port(), 9100, "the environment wins over the file");
        assert_eq!(config.instance_memory_mb, 64, "the file wins over the defaults");
        assert_eq!(config.call_timeout, Duration::from_secs(10), "defaults fill the rest");
        assert!(!config.open_mode());
    }

    #[test]
    fn reports_every_problem_at_once() {
        let errors = ServerConfig::load(
            None,
            env(&[("EDDY_LISTEN", "0.0.0.0:8080"), ("EDDY_CALL_TIMEOUT_MS", "soon"), ("EDDY_TENANTS", "bad name:123")]),
        )
        .expect_err("invalid");
        let joined = errors.join("\n");
        assert!(joined.contains("EDDY_CALL_TIMEOUT_MS"), "{joined}");
        assert!(joined.contains("token_sha256 must be 64 hex digits"), "{joined}");
        assert!(joined.contains("names are letters"), "{joined}");
        let open = ServerConfig::load(None, env(&[("EDDY_LISTEN", "0.0.0.0:8080")])).expect_err("open on network");
        assert!(open.join("").contains("without tenants"), "{open:?}");
    }
}
