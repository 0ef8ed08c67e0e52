//! Server configuration: embedded defaults, then a TOML file, then `EDDY_*` environment variables. Every problem
//! is reported at once. The config says how the host provides for jobs; what a job wants is in its spec.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A tenant: its token, the folders its jobs' files may live in, and its quotas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// The tenant's name, as it appears in routes (`/v1/tenants/{name}/...`).
    pub name: String,
    /// Hex SHA-256 of the tenant's bearer token (`eddy token hash <token>` prints it). Tokens are never stored.
    pub token_sha256: String,
    /// Further folders the tenant's file sources and sinks may use, by the name a spec gives as `root`.
    #[serde(default)]
    pub file_roots: BTreeMap<String, PathBuf>,
    /// Quotas that differ from the server's defaults.
    #[serde(default)]
    pub quota: QuotaOverrides,
    /// What its jobs' Kafka clients may reach, the names they may use and how they authenticate.
    #[serde(default)]
    pub kafka: TenantKafka,
}

/// A tenant's Kafka access (`[tenants.kafka]`): brokers, name prefixes on a shared cluster, and the client
/// settings (TLS, SASL credentials) its jobs' clients get. A spec can set none of these itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantKafka {
    /// The brokers (`host:port`) its jobs may name, instead of the server's `kafka_allowed_brokers`.
    #[serde(default)]
    pub brokers: Option<Vec<String>>,
    /// Topics its jobs read and write start with it.
    #[serde(default)]
    pub topic_prefix: String,
    /// Consumer groups and transactional ids of its jobs start with it (Eddy's default names do too).
    #[serde(default)]
    pub group_prefix: String,
    /// librdkafka settings added to every client of its jobs: `security.protocol`, `sasl.username`,
    /// `sasl.password`, `ssl.ca.location`, ...
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl TenantConfig {
    /// A tenant with a token hash, no further file roots and the default quotas.
    pub fn new(name: &str, token_sha256: &str) -> TenantConfig {
        TenantConfig { name: name.to_string(), token_sha256: token_sha256.to_string(), ..TenantConfig::default() }
    }
}

/// What one tenant may use at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Quota {
    /// Running jobs.
    pub jobs: u32,
    /// Subtasks over all its running jobs (each operator counts its parallelism).
    pub parallelism: u32,
    /// Guest memory over all its function instances, in MiB.
    pub memory_mb: usize,
    /// Guest memory over all function instances of one job, in MiB.
    pub job_memory_mb: usize,
    /// Bytes of all its uploaded modules together.
    pub module_bytes: u64,
    /// Its share of the CPU relative to other tenants' when they compete (1: an equal share).
    pub cpu_weight: u32,
    /// Records per second its sinks may write together (0: no limit); faster jobs are slowed, not failed.
    pub output_rate: u64,
    /// Keyed state its jobs may hold together, in MiB.
    pub state_mb: u64,
    /// Disk and storage its jobs may use together, in MiB: checkpoints, savepoints (until deleted), HTTP input
    /// logs, files in its folder (file-sink output) and RocksDB state.
    pub storage_mb: u64,
    /// Memory and tables of one of its function instances, in MiB (none: the server's `instance_memory_mb`).
    pub instance_memory_mb: Option<usize>,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            jobs: 100,
            parallelism: 256,
            memory_mb: 4096,
            job_memory_mb: 2048,
            module_bytes: 4 << 30,
            cpu_weight: 1,
            output_rate: 0,
            state_mb: 4096,
            storage_mb: 10240,
            instance_memory_mb: None,
        }
    }
}

/// Quota fields a tenant (or the server's default, or an admin over the API) sets; the rest come from the layer
/// below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    /// See [`Quota::jobs`].
    pub jobs: Option<u32>,
    /// See [`Quota::parallelism`].
    pub parallelism: Option<u32>,
    /// See [`Quota::memory_mb`].
    pub memory_mb: Option<usize>,
    /// See [`Quota::job_memory_mb`].
    pub job_memory_mb: Option<usize>,
    /// See [`Quota::module_bytes`].
    pub module_bytes: Option<u64>,
    /// See [`Quota::cpu_weight`].
    pub cpu_weight: Option<u32>,
    /// See [`Quota::output_rate`].
    pub output_rate: Option<u64>,
    /// See [`Quota::state_mb`].
    pub state_mb: Option<u64>,
    /// See [`Quota::storage_mb`].
    pub storage_mb: Option<u64>,
    /// See [`Quota::instance_memory_mb`].
    pub instance_memory_mb: Option<usize>,
}

impl QuotaOverrides {
    /// `base` with these fields set over it.
    pub fn over(&self, base: Quota) -> Quota {
        Quota {
            jobs: self.jobs.unwrap_or(base.jobs),
            parallelism: self.parallelism.unwrap_or(base.parallelism),
            memory_mb: self.memory_mb.unwrap_or(base.memory_mb),
            job_memory_mb: self.job_memory_mb.unwrap_or(base.job_memory_mb),
            module_bytes: self.module_bytes.unwrap_or(base.module_bytes),
            cpu_weight: self.cpu_weight.unwrap_or(base.cpu_weight).max(1),
            output_rate: self.output_rate.unwrap_or(base.output_rate),
            state_mb: self.state_mb.unwrap_or(base.state_mb),
            storage_mb: self.storage_mb.unwrap_or(base.storage_mb),
            instance_memory_mb: self.instance_memory_mb.or(base.instance_memory_mb),
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the HTTP API.
    pub listen: SocketAddr,
    /// Where modules, job definitions and compiled code live.
    pub data_dir: PathBuf,
    /// Where tenants' files live, a folder per tenant; `<data_dir>/files` when not set.
    pub files_dir: Option<PathBuf>,
    /// Largest module upload, in bytes.
    pub max_module_bytes: usize,
    /// Linear-memory limit of each function instance, in MiB.
    pub instance_memory_mb: usize,
    /// CPU time limit of each call into a function.
    pub call_timeout: Duration,
    /// Guest memory of all function instances of all tenants together, with the buffers the server holds for
    /// them (Kafka clients' queues, RocksDB caches, reads of savepoints), in MiB.
    pub guest_memory_mb: usize,
    /// Memory of one job's RocksDB state (block cache, memtables and the key cache together), in MiB; charged to
    /// the job's memory budget while it runs.
    pub rocksdb_memory_mb: usize,
    /// Uploads read and compiled at once; more are refused with 503 until one finishes.
    pub max_concurrent_uploads: usize,
    /// Longest one upload's compile may take.
    pub compile_timeout: Duration,
    /// Most memory one upload's compile may use, in MiB.
    pub compile_memory_mb: u64,
    /// The program whose `compile-worker` command compiles uploads in a process of its own (the `eddy` binary sets
    /// itself); none: uploads compile inside the server, without the two limits above.
    pub compile_worker: Option<PathBuf>,
    /// Quotas of tenants that set none of their own.
    pub quota: Quota,
    /// Limits on HTTP clients: connections, timeouts, requests per tenant.
    pub http: crate::api::serve::HttpLimits,
    /// Tenants and their tokens; none means the open single-tenant mode (loopback only).
    pub tenants: Vec<TenantConfig>,
    /// Hex SHA-256 of the admin token, which may act on any tenant.
    pub admin_token_sha256: Option<String>,
    /// Where jobs' checkpoints are kept.
    pub checkpoints: CheckpointStorage,
    /// Where jobs keep keyed state unless their spec says (`state: { backend: ... }`).
    pub state_backend: eddy_engine::spec::BackendKind,
    /// The Kafka brokers (`host:port`) jobs may name. None: any, in open mode; none at all once tenants are
    /// configured, since a broker address is a way into the server's network.
    pub kafka_allowed_brokers: Option<Vec<String>>,
    /// This server as one node of a cluster (a single server is a cluster of one).
    pub cluster: ClusterConfig,
}

/// `[cluster]`: where the control plane lives and how this server names itself in it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// A `postgres://` URL: the control plane the servers of a cluster share. None: SQLite in the data folder.
    pub database: Option<String>,
    /// This server's id in the cluster; by default the one it chose at its first start, kept in the data folder.
    pub node_id: Option<String>,
    /// The URL the other servers and clients reach this one's API at; by default `http://<listen address>`.
    pub advertise_url: Option<String>,
    /// How long this server's lease lasts unless renewed, in milliseconds (renewed every third of it).
    pub lease_ms: Option<u64>,
}

impl ClusterConfig {
    /// How long a lease lasts unless renewed.
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.unwrap_or(10_000))
    }
}

impl TenantKafka {
    /// Why a source may not read what it names, if it may not.
    pub fn refuse_source(&self, spec: &eddy_engine::spec::KafkaSourceSpec) -> Option<String> {
        let topic = spec.topics.iter().find(|t| !t.starts_with(&self.topic_prefix));
        if let Some(topic) = topic {
            return Some(outside("topic", topic, &self.topic_prefix));
        }
        match &spec.group {
            Some(group) if !group.starts_with(&self.group_prefix) => Some(outside("group", group, &self.group_prefix)),
            _ => None,
        }
    }

    /// Why a sink may not write where it names, if it may not.
    pub fn refuse_sink(&self, spec: &eddy_engine::spec::KafkaSinkSpec) -> Option<String> {
        if !spec.topic.starts_with(&self.topic_prefix) {
            return Some(outside("topic", &spec.topic, &self.topic_prefix));
        }
        match &spec.transactional_id_prefix {
            Some(prefix) if !prefix.starts_with(&self.group_prefix) => {
                Some(outside("transactional_id_prefix", prefix, &self.group_prefix))
            }
            _ => None,
        }
    }
}

fn outside(what: &str, name: &str, prefix: &str) -> String {
    format!("{what} `{name}` is not one this tenant may use: its names start with `{prefix}`")
}

/// Where checkpoints are kept: `[checkpoints]` in the config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", tag = "storage", deny_unknown_fields)]
pub enum CheckpointStorage {
    /// A local folder (`<data_dir>/checkpoints` unless `dir` is given).
    Local {
        /// The folder.
        #[serde(default)]
        dir: Option<PathBuf>,
    },
    /// An S3 bucket (or an S3-compatible server's).
    S3(crate::s3::S3Settings),
}

impl Default for CheckpointStorage {
    fn default() -> CheckpointStorage {
        CheckpointStorage::Local { dir: None }
    }
}

impl ServerConfig {
    /// The most bytes a request body may hold: a module upload or a POST of records.
    pub fn max_request_bytes(&self) -> usize {
        self.max_module_bytes.max(16 << 20)
    }

    /// The store jobs keep their checkpoints in.
    pub fn checkpoint_store(&self) -> Result<std::sync::Arc<dyn eddy_engine::checkpoint::CheckpointStore>, String> {
        match &self.checkpoints {
            CheckpointStorage::Local { dir } => {
                let dir = dir.clone().unwrap_or_else(|| self.data_dir.join("checkpoints"));
                Ok(std::sync::Arc::new(eddy_engine::checkpoint::LocalStore::new(dir)))
            }
            CheckpointStorage::S3(settings) => {
                Ok(std::sync::Arc::new(crate::s3::S3Store::new(settings).map_err(|e| e.to_string())?))
            }
        }
    }
}

/// The name of the tenant in open mode.
pub const DEFAULT_TENANT: &str = "default";

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from(".eddy"),
            files_dir: None,
            max_module_bytes: 64 << 20,
            instance_memory_mb: 256,
            call_timeout: Duration::from_secs(10),
            guest_memory_mb: 8192,
            rocksdb_memory_mb: 192,
            max_concurrent_uploads: 4,
            compile_timeout: Duration::from_secs(120),
            compile_memory_mb: 4096,
            compile_worker: None,
            quota: Quota::default(),
            http: crate::api::serve::HttpLimits::default(),
            tenants: Vec::new(),
            admin_token_sha256: None,
            checkpoints: CheckpointStorage::default(),
            state_backend: eddy_engine::spec::BackendKind::Memory,
            kafka_allowed_brokers: None,
            cluster: ClusterConfig::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    files_dir: Option<PathBuf>,
    max_module_bytes: Option<usize>,
    instance_memory_mb: Option<usize>,
    call_timeout_ms: Option<u64>,
    guest_memory_mb: Option<usize>,
    rocksdb_memory_mb: Option<u64>,
    max_concurrent_uploads: Option<usize>,
    compile_timeout_ms: Option<u64>,
    compile_memory_mb: Option<u64>,
    #[serde(default)]
    quota: QuotaOverrides,
    max_connections: Option<usize>,
    max_unauthenticated: Option<usize>,
    max_connections_per_address: Option<usize>,
    max_connections_per_tenant: Option<usize>,
    unauthenticated_idle_timeout_ms: Option<u64>,
    header_timeout_ms: Option<u64>,
    body_idle_timeout_ms: Option<u64>,
    min_body_rate: Option<u64>,
    body_rate_grace_ms: Option<u64>,
    tenant_concurrency: Option<usize>,
    #[serde(default)]
    tenants: Vec<TenantConfig>,
    admin_token_sha256: Option<String>,
    checkpoints: Option<CheckpointStorage>,
    state_backend: Option<eddy_engine::spec::BackendKind>,
    kafka_allowed_brokers: Option<Vec<String>>,
    #[serde(default)]
    cluster: ClusterConfig,
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
        config.files_dir = env("EDDY_FILES_DIR").map(PathBuf::from).or(raw.files_dir);
        config.quota = raw.quota.over(Quota::default());
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
        if let Some(n) = number("EDDY_GUEST_MEMORY_MB", "guest_memory_mb", raw.guest_memory_mb.map(|n| n as u64), 1) {
            config.guest_memory_mb = n as usize;
        }
        if let Some(n) = number("EDDY_ROCKSDB_MEMORY_MB", "rocksdb_memory_mb", raw.rocksdb_memory_mb, 8) {
            config.rocksdb_memory_mb = n as usize;
        }
        if let Some(n) = number(
            "EDDY_MAX_CONCURRENT_UPLOADS",
            "max_concurrent_uploads",
            raw.max_concurrent_uploads.map(|n| n as u64),
            1,
        ) {
            config.max_concurrent_uploads = n as usize;
        }
        if let Some(n) = number("EDDY_COMPILE_TIMEOUT_MS", "compile_timeout_ms", raw.compile_timeout_ms, 1) {
            config.compile_timeout = Duration::from_millis(n);
        }
        if let Some(n) = number("EDDY_COMPILE_MEMORY_MB", "compile_memory_mb", raw.compile_memory_mb, 16) {
            config.compile_memory_mb = n;
        }
        let http = &mut config.http;
        let as_u64 = |n: Option<usize>| n.map(|n| n as u64);
        if let Some(n) = number("EDDY_MAX_CONNECTIONS", "max_connections", as_u64(raw.max_connections), 1) {
            http.max_connections = n as usize;
        }
        if let Some(n) = number(
            "EDDY_MAX_CONNECTIONS_PER_ADDRESS",
            "max_connections_per_address",
            as_u64(raw.max_connections_per_address),
            1,
        ) {
            http.max_connections_per_address = n as usize;
        }
        let max_unauthenticated = as_u64(raw.max_unauthenticated);
        if let Some(n) = number("EDDY_MAX_UNAUTHENTICATED", "max_unauthenticated", max_unauthenticated, 1) {
            http.max_unauthenticated = n as usize;
        }
        let per_tenant = as_u64(raw.max_connections_per_tenant);
        if let Some(n) = number("EDDY_MAX_CONNECTIONS_PER_TENANT", "max_connections_per_tenant", per_tenant, 1) {
            http.max_connections_per_tenant = n as usize;
        }
        let idle = raw.unauthenticated_idle_timeout_ms;
        if let Some(n) = number("EDDY_UNAUTHENTICATED_IDLE_TIMEOUT_MS", "unauthenticated_idle_timeout_ms", idle, 100) {
            http.unauthenticated_idle_timeout = Duration::from_millis(n);
        }
        if let Some(n) = number("EDDY_MIN_BODY_RATE", "min_body_rate", raw.min_body_rate, 1) {
            http.min_body_rate = n;
        }
        if let Some(n) = number("EDDY_BODY_RATE_GRACE_MS", "body_rate_grace_ms", raw.body_rate_grace_ms, 100) {
            http.body_rate_grace = Duration::from_millis(n);
        }
        if let Some(n) = number("EDDY_HEADER_TIMEOUT_MS", "header_timeout_ms", raw.header_timeout_ms, 100) {
            http.header_timeout = Duration::from_millis(n);
        }
        if let Some(n) = number("EDDY_BODY_IDLE_TIMEOUT_MS", "body_idle_timeout_ms", raw.body_idle_timeout_ms, 100) {
            http.body_idle_timeout = Duration::from_millis(n);
        }
        if let Some(n) = number("EDDY_TENANT_CONCURRENCY", "tenant_concurrency", as_u64(raw.tenant_concurrency), 1) {
            http.tenant_concurrency = n as usize;
        }
        config.tenants = raw.tenants;
        if let Some(list) = env("EDDY_TENANTS") {
            for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
                match entry.split_once(':') {
                    Some((name, hash)) => config.tenants.push(TenantConfig::new(name.trim(), hash.trim())),
                    None => errors.push(format!("EDDY_TENANTS: `{entry}` is not name:token_sha256")),
                }
            }
        }
        config.admin_token_sha256 = env("EDDY_ADMIN_TOKEN_SHA256").or(raw.admin_token_sha256);
        config.kafka_allowed_brokers = match env("EDDY_KAFKA_ALLOWED_BROKERS") {
            Some(list) => Some(list.split(',').map(str::trim).filter(|b| !b.is_empty()).map(str::to_string).collect()),
            None => raw.kafka_allowed_brokers,
        };
        match env("EDDY_STATE_BACKEND").as_deref() {
            Some("memory") => config.state_backend = eddy_engine::spec::BackendKind::Memory,
            Some("rocksdb") => config.state_backend = eddy_engine::spec::BackendKind::Rocksdb,
            Some(other) => errors.push(format!("EDDY_STATE_BACKEND: `{other}` is not memory or rocksdb")),
            None => config.state_backend = raw.state_backend.unwrap_or(config.state_backend),
        }
        config.checkpoints = match (env("EDDY_CHECKPOINT_DIR"), env("EDDY_CHECKPOINT_S3_BUCKET")) {
            (Some(dir), None) => CheckpointStorage::Local { dir: Some(PathBuf::from(dir)) },
            (None, Some(bucket)) => {
                let mut s3 = crate::s3::S3Settings::new(bucket);
                s3.prefix = env("EDDY_CHECKPOINT_S3_PREFIX").unwrap_or_default();
                s3.endpoint = env("EDDY_CHECKPOINT_S3_ENDPOINT");
                s3.region = env("EDDY_CHECKPOINT_S3_REGION");
                s3.path_style = env("EDDY_CHECKPOINT_S3_PATH_STYLE").is_some_and(|v| v == "true" || v == "1");
                CheckpointStorage::S3(s3)
            }
            (Some(_), Some(_)) => {
                errors.push("EDDY_CHECKPOINT_DIR and EDDY_CHECKPOINT_S3_BUCKET: give one".to_string());
                CheckpointStorage::default()
            }
            (None, None) => raw.checkpoints.unwrap_or_default(),
        };
        config.cluster = raw.cluster;
        if let Some(url) = env("EDDY_CLUSTER_DATABASE") {
            config.cluster.database = Some(url);
        }
        if let Some(id) = env("EDDY_NODE_ID") {
            config.cluster.node_id = Some(id);
        }
        if let Some(url) = env("EDDY_ADVERTISE_URL") {
            config.cluster.advertise_url = Some(url);
        }
        if let Some(text) = env("EDDY_LEASE_MS") {
            match text.parse::<u64>() {
                Ok(n) => config.cluster.lease_ms = Some(n),
                Err(_) => errors.push(format!("EDDY_LEASE_MS: `{text}` is not a whole number of milliseconds")),
            }
        }
        errors.extend(config.check());
        if errors.is_empty() { Ok(config) } else { Err(errors) }
    }

    /// Problems with a config, all of them.
    pub fn check(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let cluster = &self.cluster;
        if let Some(url) = &cluster.database
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            errors.push("cluster.database: give a postgres:// URL (or leave it out for SQLite)".to_string());
        }
        if let Some(id) = &cluster.node_id
            && !eddy_name_ok(id)
        {
            errors.push(format!("cluster.node_id `{id}`: names are letters, digits, '-' or '_'"));
        }
        if cluster.lease_ms.is_some_and(|ms| ms < 300) {
            errors.push("cluster.lease_ms: must be at least 300".to_string());
        }
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
        for tenant in &self.tenants {
            for (root, folder) in &tenant.file_roots {
                if !eddy_name_ok(root) {
                    errors.push(format!("tenant `{}`: file root names are letters, digits, '-' or '_'", tenant.name));
                }
                if let Some(problem) = self.root_problem(folder) {
                    errors.push(format!("tenant `{}`, file root `{root}`: {problem}", tenant.name));
                }
            }
        }
        let mut names: Vec<&str> = self.tenants.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            errors.push("two tenants have the same name".to_string());
        }
        if let Some(admin) = &self.admin_token_sha256 {
            if !is_hash(admin) {
                errors.push("admin_token_sha256 must be 64 hex digits".to_string());
            }
            // One token for two roles would make a tenant the admin.
            if let Some(tenant) = self.tenants.iter().find(|t| t.token_sha256.eq_ignore_ascii_case(admin)) {
                errors.push(format!("tenant `{}` has the admin token; give the admin a token of its own", tenant.name));
            }
        }
        let mut hashes: Vec<String> = self.tenants.iter().map(|t| t.token_sha256.to_ascii_lowercase()).collect();
        hashes.sort_unstable();
        if hashes.windows(2).any(|w| w[0] == w[1]) {
            errors.push("two tenants have the same token".to_string());
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

    /// The limits of each function instance (`quota` may set a tenant's own memory limit).
    pub fn instance_limits(&self, quota: Option<&Quota>) -> eddy_wasm_host::Limits {
        let memory_mb = quota.and_then(|q| q.instance_memory_mb).unwrap_or(self.instance_memory_mb);
        eddy_wasm_host::Limits { memory_bytes: memory_mb << 20, call_timeout: self.call_timeout }
    }

    /// Where the RocksDB backend keeps jobs' working state: a folder per tenant and job.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }

    /// Where HTTP inputs' write-ahead logs live: a folder per tenant, job and source.
    pub fn inputs_dir(&self) -> PathBuf {
        self.data_dir.join("inputs")
    }

    /// Where tenants' folders live.
    pub fn files_dir(&self) -> PathBuf {
        self.files_dir.clone().unwrap_or_else(|| self.data_dir.join("files"))
    }

    /// A tenant's quotas.
    pub fn quota_of(&self, tenant: &str) -> Quota {
        self.tenants.iter().find(|t| t.name == tenant).map_or(self.quota, |t| t.quota.over(self.quota))
    }

    /// A tenant's further file roots.
    pub fn file_roots_of(&self, tenant: &str) -> BTreeMap<String, PathBuf> {
        self.tenants.iter().find(|t| t.name == tenant).map(|t| t.file_roots.clone()).unwrap_or_default()
    }

    /// Why `folder` cannot be a tenant's file root: it must be absolute and share nothing with the data folder,
    /// whose control files (job definitions, compiled code) no tenant may reach.
    fn root_problem(&self, folder: &Path) -> Option<String> {
        if !folder.is_absolute() {
            return Some(format!("{} must be an absolute path", folder.display()));
        }
        let resolve = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let (root, data) = (resolve(folder), resolve(&self.data_dir));
        if root.starts_with(&data) || data.starts_with(&root) {
            return Some(format!(
                "{} overlaps the data folder {}; tenants' roots must lie outside it",
                folder.display(),
                self.data_dir.display()
            ));
        }
        None
    }

    /// What `tenant`'s Kafka clients may do (nothing set for an unknown tenant, as in open mode).
    pub fn tenant_kafka(&self, tenant: &str) -> TenantKafka {
        self.tenants.iter().find(|t| t.name == tenant).map(|t| t.kafka.clone()).unwrap_or_default()
    }

    /// Whether the server runs without tokens, as the single tenant `default`.
    pub fn open_mode(&self) -> bool {
        self.tenants.is_empty() && self.admin_token_sha256.is_none()
    }

    /// Why a job of `tenant` may not talk to the Kafka brokers `brokers` (a `host:port[,host:port]` list), if it
    /// may not: the tenant's own list decides if it has one, else the server's.
    pub fn refuse_kafka_brokers(&self, tenant: &str, brokers: &str) -> Option<String> {
        let own = self.tenants.iter().find(|t| t.name == tenant).and_then(|t| t.kafka.brokers.as_ref());
        let Some(allowed) = own.or(self.kafka_allowed_brokers.as_ref()) else {
            return (!self.open_mode()).then(|| {
                "this server lets jobs reach no Kafka broker: its admin lists those they may in \
                 `kafka_allowed_brokers`"
                    .to_string()
            });
        };
        let refused: Vec<&str> =
            brokers.split(',').map(str::trim).filter(|b| !allowed.iter().any(|a| a.eq_ignore_ascii_case(b))).collect();
        (!refused.is_empty()).then(|| {
            format!(
                "Kafka broker(s) {} are not among those this server allows this tenant: {}",
                refused.join(", "),
                allowed.join(", ")
            )
        })
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
    fn checkpoint_storage_is_a_folder_or_a_bucket() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(ServerConfig::default().checkpoints, CheckpointStorage::Local { dir: None });
        let file = dir.path().join("eddy.toml");
        std::fs::write(
            &file,
            "[checkpoints]\nstorage = \"s3\"\nbucket = \"cp\"\nprefix = \"eddy/\"\nendpoint = \"http://127.0.0.1:9000\"\npath_style = true\n",
        )
        .expect("write");
        let config = ServerConfig::load(Some(&file), env(&[])).expect("valid");
        let CheckpointStorage::S3(s3) = &config.checkpoints else { panic!("{:?}", config.checkpoints) };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str(), s3.path_style), ("cp", "eddy/", true));
        let local = ServerConfig::load(Some(&file), env(&[("EDDY_CHECKPOINT_DIR", "/var/eddy/cp")])).expect("valid");
        assert_eq!(local.checkpoints, CheckpointStorage::Local { dir: Some("/var/eddy/cp".into()) }, "env wins");
        std::fs::write(&file, "[checkpoints]\nstorage = \"s3\"\nbucket = \"cp\"\nbukket = \"typo\"\n").expect("write");
        let errors = ServerConfig::load(Some(&file), env(&[])).expect_err("unknown field").join("\n");
        assert!(errors.contains("bukket"), "{errors}");
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
