//! Which folders the studio may touch, and turning what a request names into a path
//! inside them.
//!
//! Every path a request names is canonicalised (which resolves `..` and symbolic links)
//! and must then lie inside one of the folders the user chose on the command line: the
//! models folder (models, reports, collections, generated sounds, kits, the studio's own
//! state) for reading and writing, and the data folders (`--data-root`, by default the home
//! folder) for reading and browsing only. Names of new files are single plain components.

use std::path::{Component, Path, PathBuf};

use super::error::{ApiError, ApiResult};

/// Sub-folders of the models folder the studio writes.
pub const COLLECTIONS: &str = "collections";
pub const GENERATED: &str = "generated";
pub const KITS: &str = "kits";
pub const STATE: &str = ".studio";

/// The folders the studio may read and write.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The models folder (canonical): read and written.
    pub models: PathBuf,
    pub collections: PathBuf,
    pub generated: PathBuf,
    pub kits: PathBuf,
    pub state: PathBuf,
    /// Data folders (canonical): read and browsed, never written.
    pub data: Vec<PathBuf>,
}

impl Roots {
    /// Creates the models folder and its sub-folders when missing and canonicalises all.
    pub fn new(models: &Path, data: &[PathBuf]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(models)
            .map_err(|e| anyhow::anyhow!("creating the models folder {}: {e}", models.display()))?;
        let models = std::fs::canonicalize(models)?;
        let sub = |name: &str| -> anyhow::Result<PathBuf> {
            let p = models.join(name);
            std::fs::create_dir_all(&p)
                .map_err(|e| anyhow::anyhow!("creating {}: {e}", p.display()))?;
            Ok(std::fs::canonicalize(&p)?)
        };
        let mut roots = Vec::new();
        for d in data {
            let c = std::fs::canonicalize(d)
                .map_err(|e| anyhow::anyhow!("data folder {}: {e}", d.display()))?;
            anyhow::ensure!(c.is_dir(), "data folder {} is not a folder", d.display());
            roots.push(c);
        }
        Ok(Self {
            collections: sub(COLLECTIONS)?,
            generated: sub(GENERATED)?,
            kits: sub(KITS)?,
            state: sub(STATE)?,
            models,
            data: roots,
        })
    }

    /// Folders the folder browser starts from: the data folders and the collections.
    pub fn browse_roots(&self) -> Vec<PathBuf> {
        let mut v = self.data.clone();
        v.push(self.collections.clone());
        v
    }

    /// An existing folder named by the user (absolute, or `~/…`) that lies inside a data
    /// folder or the models folder: the only folders that are browsed, scanned or trained on.
    pub fn readable_dir(&self, raw: &str) -> ApiResult<PathBuf> {
        let path = expand(raw)?;
        let outside = || {
            ApiError::forbidden(format!(
                "{raw} is outside the folders this studio may read ({}); start it with --data-root to add one",
                self.describe_roots()
            ))
        };
        // Whether a path outside exists, or what it is, is not told.
        let canonical = match std::fs::canonicalize(&path) {
            Ok(c) => c,
            Err(_) if self.is_readable(&path) => {
                return Err(ApiError::not_found(format!("{raw} does not exist")));
            }
            Err(_) => return Err(outside()),
        };
        if !self.is_readable(&canonical) {
            return Err(outside());
        }
        if !canonical.is_dir() {
            return Err(ApiError::bad_request(format!("{raw} is not a folder")));
        }
        Ok(canonical)
    }

    /// Whether an (already canonical) path lies inside the readable folders.
    pub fn is_readable(&self, canonical: &Path) -> bool {
        canonical.starts_with(&self.models) || self.data.iter().any(|r| canonical.starts_with(r))
    }

    pub fn describe_roots(&self) -> String {
        self.data
            .iter()
            .chain(std::iter::once(&self.models))
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// An existing model file in the models folder, by its plain file name.
    pub fn model_file(&self, name: &str) -> ApiResult<PathBuf> {
        let name = plain_name(name)?;
        let path = self.models.join(name);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|_| ApiError::not_found(format!("no model named {name}")))?;
        if !meta.is_file() {
            return Err(ApiError::not_found(format!("no model named {name}")));
        }
        Ok(path)
    }

    /// An existing entry `name` directly inside `dir` (itself inside the models folder),
    /// never a symbolic link.
    pub fn child(&self, dir: &Path, name: &str) -> ApiResult<PathBuf> {
        let name = plain_name(name)?;
        let path = dir.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_symlink() => Ok(path),
            _ => Err(ApiError::not_found(format!("{name} does not exist"))),
        }
    }
}

/// `~/x` expanded with the home folder; relative paths are refused (the server's working
/// folder means nothing to the person at the browser).
pub fn expand(raw: &str) -> ApiResult<PathBuf> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err(ApiError::bad_request("give a folder path"));
    }
    if raw.contains('\0') {
        return Err(ApiError::bad_request("the path contains a NUL character"));
    }
    let path = if raw == "~" || raw.starts_with("~/") {
        let home = home_dir().ok_or_else(|| ApiError::bad_request("no home folder is known"))?;
        home.join(raw.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(raw)
    };
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "{raw}: give a full path (starting with / or ~/)"
        )));
    }
    Ok(path)
}

/// The canonical form of an existing path (symbolic links and `..` resolved).
pub fn canonical(path: &Path) -> ApiResult<PathBuf> {
    std::fs::canonicalize(path)
        .map_err(|_| ApiError::not_found(format!("{} does not exist", path.display())))
}

pub fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A single plain path component naming an existing entry: no separators, not `.` or
/// `..`, not hidden.
pub fn plain_name(name: &str) -> ApiResult<&str> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0']);
    let mut parts = Path::new(name).components();
    let single = matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    );
    if bad || !single {
        return Err(ApiError::bad_request(format!(
            "'{name}' is not a plain file name"
        )));
    }
    Ok(name)
}

/// A name for something new (model, collection, uploaded file, kit): letters, digits,
/// spaces and `-_.()+,`, 1–100 characters, not starting with a dot.
pub fn new_name(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    let ok = !name.is_empty()
        && name.chars().count() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || " -_.()+,".contains(c));
    if !ok {
        return Err(ApiError::bad_request(format!(
            "'{raw}' cannot be used as a name: use letters, digits, spaces and - _ . ( ) + , (at most 100, not starting with a dot)"
        )));
    }
    Ok(name.to_string())
}

/// A relative path below `base` (each component plain), canonicalised and checked to stay
/// inside `base` (a symbolic link pointing out is refused).
pub fn join_inside(base: &Path, rel: &str) -> ApiResult<PathBuf> {
    let rel_path = Path::new(rel);
    let plain = rel_path
        .components()
        .all(|c| matches!(c, Component::Normal(n) if !n.to_string_lossy().starts_with('.')));
    if rel.is_empty() || rel.contains('\0') || rel_path.is_absolute() || !plain {
        return Err(ApiError::bad_request(format!(
            "'{rel}' is not a path inside the folder"
        )));
    }
    let base = canonical(base)?;
    let path = canonical(&base.join(rel_path))?;
    if !path.starts_with(&base) {
        return Err(ApiError::forbidden(format!(
            "'{rel}' leads outside the folder"
        )));
    }
    Ok(path)
}

/// `dir/name`, or `dir/stem (2).ext`, … when taken.
pub fn unique_in(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if std::fs::symlink_metadata(&first).is_err() {
        return first;
    }
    let p = Path::new(name);
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = p
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (2..)
        .map(|i| dir.join(format!("{stem} ({i}){ext}")))
        .find(|c| std::fs::symlink_metadata(c).is_err())
        .unwrap_or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_plain_components() {
        for bad in [
            "", ".", "..", "../x", "a/b", "/etc", ".hidden", "a\\b", "x\0",
        ] {
            assert!(plain_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(plain_name("kick (2).wav").ok(), Some("kick (2).wav"));
        assert!(new_name("my drums").is_ok());
        for bad in ["", "../x", "a/b", ".x", "a;b", "x\0"] {
            assert!(new_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_paths_stay_inside() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = dir.path().join("base");
        std::fs::create_dir_all(base.join("sub")).expect("mkdir");
        std::fs::write(base.join("sub/a.txt"), b"a").expect("write");
        std::fs::write(dir.path().join("secret"), b"s").expect("write");
        assert!(join_inside(&base, "sub/a.txt").is_ok());
        for bad in [
            "../secret",
            "sub/../../secret",
            "/etc/passwd",
            "",
            "./sub/a.txt",
        ] {
            assert!(join_inside(&base, bad).is_err(), "{bad:?}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret"), base.join("link"))
                .expect("symlink");
            let e = join_inside(&base, "link").expect_err("a link out is refused");
            assert_eq!(e.status, axum::http::StatusCode::FORBIDDEN);
        }
    }
}
