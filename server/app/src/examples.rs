//! Builds the example UDFs of `udfs/` for the demo, the benchmarks and the tests, so that none of them needs a
//! manual build step. Rust examples build with cargo (which skips what is up to date); Python and JavaScript
//! examples are cached by a hash of their sources, the SDK helper and the WIT.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// Where the repository and the build cache are.
#[derive(Debug, Clone)]
pub struct Examples {
    repo: PathBuf,
    cache: PathBuf,
}

/// The guest languages with example UDFs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// Rust, through `guest-sdk`.
    Rust,
    /// Python, through componentize-py.
    Python,
    /// JavaScript, through componentize-qjs.
    Js,
}

/// The folder build caches live in: `$EDDY_CACHE_DIR`, else `~/.cache/eddy`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDDY_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("eddy")
}

/// Serializes builds within one process (tests run in parallel).
static BUILD_LOCK: Mutex<()> = Mutex::new(());
static RUST_BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();

impl Examples {
    /// Finds the repository: `$EDDY_REPO`, else the checkout that `cargo run` or `cargo test` runs in, else one
    /// around the current folder, else the checkout this binary was built from.
    pub fn locate() -> anyhow::Result<Examples> {
        let starts = [
            std::env::var_os("EDDY_REPO").map(PathBuf::from),
            // Set by cargo when it runs a binary or test: right even when the build came from another checkout
            // sharing the target folder.
            std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from),
            std::env::current_dir().ok(),
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
        ];
        let candidates =
            starts.into_iter().flatten().flat_map(|start| start.ancestors().map(Path::to_path_buf).collect::<Vec<_>>());
        for repo in candidates {
            if repo.join("udfs/Cargo.toml").exists() && repo.join("wit/udf.wit").exists() {
                let repo = repo.canonicalize().unwrap_or(repo);
                return Ok(Examples { repo, cache: cache_dir() });
            }
        }
        bail!("cannot find the Eddy repository (with udfs/ and wit/): run from a checkout or set EDDY_REPO")
    }

    /// The repository root.
    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// The compiled component of example `name` (`udfs/<language>/<name>`).
    pub fn wasm(&self, language: Language, name: &str) -> anyhow::Result<PathBuf> {
        match language {
            Language::Rust => self.rust(name),
            Language::Python => self.scripted("python", name),
            Language::Js => self.scripted("js", name),
        }
    }

    /// Reads the compiled component of an example.
    pub fn bytes(&self, language: Language, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.wasm(language, name)?;
        std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    fn rust(&self, name: &str) -> anyhow::Result<PathBuf> {
        let target = RUST_BUILT
            .get_or_init(|| {
                let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
                self.build_rust().map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(anyhow::Error::msg)?;
        let path = target.join(format!("{}.wasm", name.replace('-', "_")));
        if !path.exists() {
            bail!("there is no Rust example `{name}` in udfs/rust");
        }
        Ok(path)
    }

    fn build_rust(&self) -> anyhow::Result<PathBuf> {
        ensure_wasm_target()?;
        let target_dir = self.cache.join("udfs-target");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2", "--manifest-path"])
            .arg(self.repo.join("udfs/Cargo.toml"))
            .current_dir(self.repo.join("udfs"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("RUSTFLAGS")
            .status()
            .context("cannot run cargo to build the Rust examples")?;
        if !status.success() {
            bail!("building the Rust examples in udfs/ failed ({status})");
        }
        Ok(target_dir.join("wasm32-wasip2/release"))
    }

    fn scripted(&self, language: &str, name: &str) -> anyhow::Result<PathBuf> {
        let folder = self.repo.join("udfs").join(language).join(name);
        if !folder.is_dir() {
            bail!("there is no {language} example `{name}` in udfs/{language}");
        }
        let helper = self.repo.join("guest-sdk").join(language);
        let script = self.repo.join("udfs").join(language).join("build.sh");
        let hash = hash_sources(&[&folder, &helper, &self.repo.join("wit"), &script])?;
        let out = self.cache.join("udfs").join(format!("{language}-{name}-{}.wasm", &hash[..16]));
        if out.exists() {
            return Ok(out);
        }
        let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if out.exists() {
            return Ok(out);
        }
        std::fs::create_dir_all(out.parent().unwrap_or(&self.cache))?;
        let tmp = out.with_extension("tmp.wasm");
        let output = Command::new("bash")
            .arg(&script)
            .arg(name)
            .env("OUT", &tmp)
            .output()
            .with_context(|| format!("cannot run udfs/{language}/build.sh"))?;
        if !output.status.success() {
            bail!(
                "building udfs/{language}/{name} failed ({}); is the {language} toolchain installed (tests/run.sh installs it)?\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::fs::rename(&tmp, &out)?;
        Ok(out)
    }
}

/// Installs the wasm32-wasip2 target with rustup if it is missing.
pub fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-wasip2") => Ok(()),
        Ok(_) => {
            eprintln!("installing the wasm32-wasip2 Rust target (once)...");
            let status = Command::new("rustup").args(["target", "add", "wasm32-wasip2"]).status()?;
            if status.success() { Ok(()) } else { bail!("`rustup target add wasm32-wasip2` failed") }
        }
        // Without rustup the toolchain may still have the target; cargo will say if not.
        Err(_) => Ok(()),
    }
}

/// SHA-256 over every file (name and contents) under `roots` (folders or single files), skipping build outputs.
fn hash_sources(roots: &[&Path]) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    for root in roots {
        let mut files = Vec::new();
        collect(root, &mut files)?;
        files.sort();
        for file in files {
            // Relative names, so that the hash does not depend on where the checkout lives.
            hasher.update(file.strip_prefix(root).unwrap_or(&file).to_string_lossy().as_bytes());
            hasher.update(std::fs::read(&file)?);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    if !dir.exists() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with('.') || name == "node_modules" || name == "__pycache__" || name.ends_with(".wasm") {
            continue;
        }
        if path.is_dir() {
            collect(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}
