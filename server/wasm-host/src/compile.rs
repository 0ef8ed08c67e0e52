//! Validating and compiling uploads. A component is accepted only if it is a component (not a core module),
//! exports at least one of Eddy's function interfaces with the right signatures plus `lifecycle`, and imports
//! nothing but Eddy's interfaces and WASI 0.2. Compiled code is cached on disk by content hash, so a restart
//! loads it in milliseconds instead of compiling again.

use crate::bindings::{
    aggregator, filter, flat_mapper, key_selector, lifecycle, mapper, processor, reducer, state_schema,
    timestamp_assigner, window_processor,
};
use crate::instance::{Accounts, EPOCH_TICK, HostState, Instance};
use crate::limits::Limits;
use crate::worker::CompileWorker;
use eddy_engine::function::{FunctionScope, UdfKind};
use eddy_engine::state::{DeclaredState, StateKind};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use wasmtime::component::{Component, InstancePre, Linker};
use wasmtime::{Config, Engine, OptLevel};

/// The WIT interface a component exports for a kind of function.
pub fn interface_name(kind: UdfKind) -> &'static str {
    match kind {
        UdfKind::Map => "eddy:udf/mapper@0.1.0",
        UdfKind::Filter => "eddy:udf/filter@0.1.0",
        UdfKind::FlatMap => "eddy:udf/flat-mapper@0.1.0",
        UdfKind::KeySelector => "eddy:udf/key-selector@0.1.0",
        UdfKind::TimestampAssigner => "eddy:udf/timestamp-assigner@0.1.0",
        UdfKind::Process => "eddy:udf/processor@0.1.0",
        UdfKind::Aggregate => "eddy:udf/aggregator@0.1.0",
        UdfKind::Reduce => "eddy:udf/reducer@0.1.0",
        UdfKind::ProcessWindow => "eddy:udf/window-processor@0.1.0",
    }
}

const LIFECYCLE: &str = "eddy:udf/lifecycle@0.1.0";
const STATE_SCHEMA: &str = "eddy:udf/state-schema@0.1.0";

/// Why an upload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly component: the file does not start with the \\0asm header")]
    NotWasm,
    /// A core module.
    #[error(
        "this is a core WebAssembly module, not a component: build for the wasm32-wasip2 target (or wrap it with \
         `wasm-tools component new`) against one of the worlds in wit/udf.wit"
    )]
    CoreModule,
    /// Rejected by the validator or compiler.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// Exports no Eddy function interface.
    #[error(
        "the component exports none of Eddy's function interfaces (eddy:udf/mapper, filter, flat-mapper, \
         key-selector, timestamp-assigner, processor, aggregator, reducer, window-processor @0.1.0); it exports: {0}. \
         Build it for one of the worlds in wit/udf.wit"
    )]
    UnknownWorld(String),
    /// Exports a function interface but no `lifecycle`.
    #[error("the component does not export {LIFECYCLE}, which every Eddy world requires (its `init` hook)")]
    MissingLifecycle,
    /// An export does not have Eddy's signature.
    #[error("the component's export {interface} does not match Eddy's WIT (eddy:udf@0.1.0): {detail}")]
    Mismatch {
        /// The interface.
        interface: String,
        /// What wasmtime found.
        detail: String,
    },
    /// Imports something Eddy does not provide.
    #[error(
        "the component imports {imports}, which Eddy does not provide; guests may import eddy:udf/log, keyed-state, \
         context and types @0.1.0, and WASI 0.2 ({detail})"
    )]
    Imports {
        /// The unknown imports.
        imports: String,
        /// What wasmtime said.
        detail: String,
    },
    /// Its state declarations are not usable.
    #[error("the component's state declarations (eddy:udf/state-schema) are not usable: {0}")]
    Declarations(String),
    /// Instantiation (its start code) failed.
    #[error("the component fails when it starts: {0}")]
    Start(String),
    /// No compiled code and no bytes to compile.
    #[error("module sha256:{0} is not loaded and its bytes are missing")]
    Missing(String),
    /// The stored bytes are not the ones uploaded.
    #[error("the stored bytes of module sha256:{0} do not match their hash; upload the module again")]
    Corrupt(String),
}

/// Export indices of every function kind a component provides.
#[derive(Clone, Default)]
pub(crate) struct Exports {
    pub mapper: Option<mapper::GuestIndices>,
    pub filter: Option<filter::GuestIndices>,
    pub flat_mapper: Option<flat_mapper::GuestIndices>,
    pub key_selector: Option<key_selector::GuestIndices>,
    pub timestamp_assigner: Option<timestamp_assigner::GuestIndices>,
    pub processor: Option<processor::GuestIndices>,
    pub aggregator: Option<aggregator::GuestIndices>,
    pub reducer: Option<reducer::GuestIndices>,
    pub window_processor: Option<window_processor::GuestIndices>,
    pub state_schema: Option<state_schema::GuestIndices>,
}

/// A validated, compiled component ready to instantiate.
pub struct CompiledModule {
    /// Hex sha256 of the uploaded bytes.
    pub hash: String,
    /// Hex sha256 of its compiled code in the disk cache, if it was cached: keep it with the module's record and
    /// pass it to [`WasmRuntime::load`], which loads cached code only if it still has this digest.
    pub artifact: Option<String>,
    /// The function kinds it exports.
    pub kinds: Vec<UdfKind>,
    /// The keyed states it declares it opens; none when it does not declare them.
    pub declared_states: Option<Arc<[DeclaredState]>>,
    pre: InstancePre<HostState>,
    pub(crate) lifecycle: lifecycle::GuestIndices,
    pub(crate) exports: Exports,
}

impl std::fmt::Debug for CompiledModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledModule").field("hash", &self.hash).field("kinds", &self.kinds).finish()
    }
}

impl CompiledModule {
    pub(crate) fn pre(&self) -> &InstancePre<HostState> {
        &self.pre
    }

    pub(crate) fn engine(&self) -> &Engine {
        self.pre.engine()
    }
}

/// The wasmtime engine, linker, compile cache and loaded modules.
pub struct WasmRuntime {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    engine_tag: String,
    check_limits: Limits,
    /// Compiles in a separate, limited process when set.
    worker: std::sync::OnceLock<CompileWorker>,
    modules: Mutex<HashMap<String, Arc<CompiledModule>>>,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for WasmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmRuntime").field("cache_dir", &self.cache_dir).finish()
    }
}

impl Drop for WasmRuntime {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl WasmRuntime {
    /// A runtime caching compiled code in `cache_dir` (none: no disk cache); uploads are checked by instantiating
    /// them under `check_limits`, the limits their jobs will have.
    pub fn new(cache_dir: Option<PathBuf>, check_limits: Limits) -> Result<Arc<WasmRuntime>, String> {
        let engine = Engine::new(&engine_config()).map_err(|e| format!("cannot configure wasmtime: {e:#}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| format!("cannot link WASI: {e:#}"))?;
        crate::bindings::UdfHost::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| format!("cannot link Eddy's imports: {e:#}"))?;
        crate::host::clocks::add_to_linker(&mut linker).map_err(|e| format!("cannot link the guest timers: {e:#}"))?;
        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_tag = format!("{:016x}", hasher.finish());
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let runtime = Arc::new(WasmRuntime {
            engine: engine.clone(),
            linker,
            cache_dir,
            engine_tag,
            check_limits,
            worker: std::sync::OnceLock::new(),
            modules: Mutex::new(HashMap::new()),
            stop_ticker: Arc::clone(&stop_ticker),
        });
        let weak: Weak<WasmRuntime> = Arc::downgrade(&runtime);
        std::thread::Builder::new()
            .name("eddy-wasm-epoch".into())
            .spawn(move || {
                while !stop_ticker.load(Ordering::Relaxed) && weak.strong_count() > 0 {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the epoch thread: {e}"))?;
        Ok(runtime)
    }

    fn cache_path(&self, hash: &str) -> Option<PathBuf> {
        self.cache_dir.as_ref().map(|d| d.join(format!("{hash}-{}.cwasm", self.engine_tag)))
    }

    /// Validates and compiles uploaded bytes (or finds them loaded already). Compiled code on disk is never trusted
    /// here: only [`WasmRuntime::load`] with its recorded digest reads it.
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<CompiledModule>, ModuleError> {
        check_header(bytes)?;
        let hash = sha256_hex(bytes);
        if let Some(module) = self.modules.lock().get(&hash) {
            return Ok(Arc::clone(module));
        }
        let component = match self.worker.get() {
            Some(worker) => {
                let compiled = crate::worker::compile(worker, bytes).map_err(ModuleError::Invalid)?;
                // SAFETY: the bytes are what `precompile_component` produced in a worker running this very binary
                // with `engine_config()`, read straight from its standard output.
                unsafe { Component::deserialize(&self.engine, &compiled) }
                    .map_err(|e| ModuleError::Invalid(format!("{e:#}")))?
            }
            None => Component::new(&self.engine, bytes).map_err(|e| ModuleError::Invalid(format!("{e:#}")))?,
        };
        let mut module = self.analyze(hash.clone(), component)?;
        // Cache only what passed every check, so a refused upload leaves nothing on disk.
        module.artifact = self.store_cache(&hash, &module.pre);
        let module = Arc::new(module);
        self.modules.lock().insert(hash, Arc::clone(&module));
        Ok(module)
    }

    /// The module with `hash`: loaded already, from the disk cache if its compiled code still has the digest
    /// `artifact` recorded when it was compiled, or else compiled again from `bytes()` (whose hash must match).
    /// The result's `artifact` is the digest to record from now on.
    pub fn load(
        &self,
        hash: &str,
        artifact: Option<&str>,
        bytes: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Result<Arc<CompiledModule>, ModuleError> {
        if let Some(module) = self.get(hash) {
            return Ok(module);
        }
        if let Some(digest) = artifact
            && let Some(component) = self.cached(hash, digest)
        {
            let mut module = self.analyze(hash.to_string(), component)?;
            module.artifact = Some(digest.to_string());
            let module = Arc::new(module);
            self.modules.lock().insert(hash.to_string(), Arc::clone(&module));
            return Ok(module);
        }
        let bytes = bytes().ok_or_else(|| ModuleError::Missing(hash.to_string()))?;
        if sha256_hex(&bytes) != hash {
            return Err(ModuleError::Corrupt(hash.to_string()));
        }
        self.compile(&bytes)
    }

    /// Compiles every later upload in a separate process run as `worker` says (once; later calls change nothing).
    pub fn compile_in_workers(&self, worker: CompileWorker) {
        let _ = self.worker.set(worker);
    }

    /// A loaded module.
    pub fn get(&self, hash: &str) -> Option<Arc<CompiledModule>> {
        self.modules.lock().get(hash).cloned()
    }

    /// Drops a module from memory and from the disk cache.
    pub fn forget(&self, hash: &str) {
        self.modules.lock().remove(hash);
        if let Some(path) = self.cache_path(hash) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Compiled code from the disk cache, if its bytes have the digest recorded when they were written.
    fn cached(&self, hash: &str, digest: &str) -> Option<Component> {
        let path = self.cache_path(hash)?;
        let bytes = std::fs::read(&path).ok()?;
        if sha256_hex(&bytes) != digest {
            tracing::warn!("compiled code {} is not what was cached; compiling again", path.display());
            return None;
        }
        // SAFETY: these are the exact bytes `store_cache` serialized from this engine (their digest was recorded in
        // the control plane when they were written, and the file name carries the engine's compatibility hash), so
        // they are code wasmtime produced, not bytes anyone else could have placed there.
        match unsafe { Component::deserialize(&self.engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!("ignoring unusable compiled module {}: {e:#}", path.display());
                None
            }
        }
    }

    /// Writes compiled code to the cache; its digest, or none if it could not be cached.
    fn store_cache(&self, hash: &str, pre: &InstancePre<HostState>) -> Option<String> {
        let path = self.cache_path(hash)?;
        let written = pre.component().serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            write_atomically(&path, &bytes)?;
            Ok(sha256_hex(&bytes))
        });
        match written {
            Ok(digest) => Some(digest),
            Err(e) => {
                tracing::warn!("cannot cache compiled module {}: {e}", path.display());
                None
            }
        }
    }

    /// Checks imports and exports, and instantiates once to type-check the exported functions.
    fn analyze(&self, hash: String, component: Component) -> Result<CompiledModule, ModuleError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_string()).collect();
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            let unknown: Vec<String> = ty
                .imports(&self.engine)
                .map(|(name, _)| name.to_string())
                .filter(|name| !name.starts_with("wasi:") && !name.starts_with("eddy:udf/"))
                .collect();
            let imports = if unknown.is_empty() { "an interface".to_string() } else { unknown.join(", ") };
            ModuleError::Imports { imports, detail: format!("{e:#}") }
        })?;
        let kinds: Vec<UdfKind> =
            UdfKind::ALL.iter().copied().filter(|k| exports.iter().any(|e| e == interface_name(*k))).collect();
        if kinds.is_empty() {
            let listed = if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") };
            return Err(ModuleError::UnknownWorld(listed));
        }
        if !exports.iter().any(|e| e == LIFECYCLE) {
            return Err(ModuleError::MissingLifecycle);
        }
        let mismatch = |interface: &str| {
            let interface = interface.to_string();
            move |e: wasmtime::Error| ModuleError::Mismatch { interface: interface.clone(), detail: format!("{e:#}") }
        };
        let lifecycle = lifecycle::GuestIndices::new(&pre).map_err(mismatch(LIFECYCLE))?;
        let mut found = Exports::default();
        for kind in &kinds {
            let on_error = mismatch(interface_name(*kind));
            match kind {
                UdfKind::Map => found.mapper = Some(mapper::GuestIndices::new(&pre).map_err(on_error)?),
                UdfKind::Filter => found.filter = Some(filter::GuestIndices::new(&pre).map_err(on_error)?),
                UdfKind::FlatMap => found.flat_mapper = Some(flat_mapper::GuestIndices::new(&pre).map_err(on_error)?),
                UdfKind::KeySelector => {
                    found.key_selector = Some(key_selector::GuestIndices::new(&pre).map_err(on_error)?)
                }
                UdfKind::TimestampAssigner => {
                    found.timestamp_assigner = Some(timestamp_assigner::GuestIndices::new(&pre).map_err(on_error)?)
                }
                UdfKind::Process => found.processor = Some(processor::GuestIndices::new(&pre).map_err(on_error)?),
                UdfKind::Aggregate => found.aggregator = Some(aggregator::GuestIndices::new(&pre).map_err(on_error)?),
                UdfKind::Reduce => found.reducer = Some(reducer::GuestIndices::new(&pre).map_err(on_error)?),
                UdfKind::ProcessWindow => {
                    found.window_processor = Some(window_processor::GuestIndices::new(&pre).map_err(on_error)?)
                }
            }
        }
        if exports.iter().any(|e| e == STATE_SCHEMA) {
            found.state_schema = Some(state_schema::GuestIndices::new(&pre).map_err(mismatch(STATE_SCHEMA))?);
        }
        let mut module =
            CompiledModule { hash, artifact: None, kinds, declared_states: None, pre, lifecycle, exports: found };
        module.declared_states = type_check(&module, &self.check_limits)?;
        Ok(module)
    }
}

/// Instantiates once (without `init`) under `limits`, loads every export with its typed signature, and reads the
/// module's state declarations.
fn type_check(module: &CompiledModule, limits: &Limits) -> Result<Option<Arc<[DeclaredState]>>, ModuleError> {
    let scope = FunctionScope {
        job: "upload".into(),
        tenant: String::new(),
        operator: "check".into(),
        subtask: 0,
        stop: Arc::default(),
    };
    let mut instance =
        Instance::bare(module, limits, &Accounts::default(), &scope).map_err(|e| ModuleError::Start(e.message))?;
    let (store, inst) = (&mut instance.store, &instance.instance);
    let mismatch = |kind: UdfKind| {
        move |e: wasmtime::Error| ModuleError::Mismatch {
            interface: interface_name(kind).into(),
            detail: format!("{e:#}"),
        }
    };
    module
        .lifecycle
        .load(&mut *store, inst)
        .map_err(|e| ModuleError::Mismatch { interface: LIFECYCLE.into(), detail: format!("{e:#}") })?;
    let x = &module.exports;
    if let Some(i) = &x.mapper {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::Map))?;
    }
    if let Some(i) = &x.filter {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::Filter))?;
    }
    if let Some(i) = &x.flat_mapper {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::FlatMap))?;
    }
    if let Some(i) = &x.key_selector {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::KeySelector))?;
    }
    if let Some(i) = &x.timestamp_assigner {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::TimestampAssigner))?;
    }
    if let Some(i) = &x.processor {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::Process))?;
    }
    if let Some(i) = &x.aggregator {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::Aggregate))?;
    }
    if let Some(i) = &x.reducer {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::Reduce))?;
    }
    if let Some(i) = &x.window_processor {
        i.load(&mut *store, inst).map_err(mismatch(UdfKind::ProcessWindow))?;
    }
    let Some(schema) = &x.state_schema else { return Ok(None) };
    let schema = schema
        .load(&mut *store, inst)
        .map_err(|e| ModuleError::Mismatch { interface: STATE_SCHEMA.into(), detail: format!("{e:#}") })?;
    let declared = instance
        .call(|store| schema.call_declared_states(store).map(Ok))
        .map_err(|e| ModuleError::Declarations(e.message))?;
    declared.map(declarations).transpose()
}

/// The engine's view of a module's declarations; a name declared twice is refused.
fn declarations(declared: Vec<state_schema::StateDeclaration>) -> Result<Arc<[DeclaredState]>, ModuleError> {
    let mut states: Vec<DeclaredState> = Vec::with_capacity(declared.len());
    for d in declared {
        if states.iter().any(|s| s.name == d.name) {
            return Err(ModuleError::Declarations(format!("state `{}` is declared twice", d.name)));
        }
        let kind = match d.kind {
            state_schema::StateKind::Value => StateKind::Value,
            state_schema::StateKind::List => StateKind::List,
            state_schema::StateKind::Map => StateKind::Map,
        };
        states.push(DeclaredState { name: d.name, kind, ttl_ms: d.ttl.map(|t| t.time_to_live_ms) });
    }
    Ok(states.into())
}

/// The wasmtime configuration of Eddy's engine, shared by the server and its compile workers (compiled code is only
/// usable by an engine configured alike).
pub(crate) fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    config.parallel_compilation(true);
    config
}

fn check_header(bytes: &[u8]) -> Result<(), ModuleError> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(ModuleError::CoreModule),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', ..]) => Err(ModuleError::Invalid("unknown WebAssembly version".into())),
        _ => Err(ModuleError::NotWasm),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    // A name no concurrent writer shares: two uploads of one module must not write into each other's file.
    let tmp = path.with_extension(format!("tmp-{}", uuid_like()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            std::io::Write::write_all(&mut file, bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| e.to_string())
}

/// A name unique to this process and call.
fn uuid_like() -> String {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}
