//! CUDA-aware MPI detection at run time, with overrides. When MPI is not CUDA-aware,
//! the engine stages device memory through host buffers (`zero/comm.rs`).
use std::ffi::CStr;

/// What the user asked for: `auto` (detect), `on` or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaAwareSetting {
    Auto,
    On,
    Off,
}

impl CudaAwareSetting {
    /// Parses `auto`, `on`/`true`/`1`, `off`/`false`/`0`.
    pub fn parse(s: &str) -> anyhow::Result<CudaAwareSetting> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(CudaAwareSetting::Auto),
            "on" | "true" | "1" | "yes" => Ok(CudaAwareSetting::On),
            "off" | "false" | "0" | "no" => Ok(CudaAwareSetting::Off),
            other => {
                anyhow::bail!("cuda_aware: unknown value '{other}' (expected auto, on or off)")
            }
        }
    }
}

/// The environment variable that overrides detection when the setting is `auto`.
pub const CUDA_AWARE_ENV: &str = "ZEROTRAIN_CUDA_AWARE";

/// The decision and why it was taken (for the start-up log).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaAware {
    pub enabled: bool,
    pub reason: String,
    /// The decision came from asking the library, not from the user (the configuration
    /// or `ZEROTRAIN_CUDA_AWARE`).
    pub detected: bool,
}

impl CudaAware {
    /// True when the decision was taken by asking the library.
    pub fn detected(&self) -> bool {
        self.detected
    }
}

/// Asks the MPI library through OpenMPI's `MPIX_Query_cuda_support()`, looked up with
/// `dlsym(RTLD_DEFAULT, ...)` so the binary also links and runs with MPICH (then `None`).
pub fn query_mpix_cuda_support() -> Option<bool> {
    const NAME: &CStr = c"MPIX_Query_cuda_support";
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks a symbol up.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, NAME.as_ptr()) };
    if sym.is_null() {
        return None;
    }
    // SAFETY: OpenMPI declares `int MPIX_Query_cuda_support(void)`; MPI is initialised.
    let f: extern "C" fn() -> libc::c_int = unsafe { std::mem::transmute(sym) };
    Some(f() != 0)
}

/// Decides what can be decided without asking MPI: an explicit `on`/`off` setting wins;
/// with `auto`, `ZEROTRAIN_CUDA_AWARE=0/1` (value in `env`) wins; `Ok(None)` means "ask
/// the library". Runs before MPI starts, so a bad value is reported before any collective.
pub fn decide_without_query(
    setting: CudaAwareSetting,
    env: Option<&str>,
) -> anyhow::Result<Option<CudaAware>> {
    let decided = |enabled: bool, reason: String| {
        Ok(Some(CudaAware {
            enabled,
            reason,
            detected: false,
        }))
    };
    match setting {
        CudaAwareSetting::On => decided(true, "forced on by configuration".into()),
        CudaAwareSetting::Off => decided(false, "forced off by configuration".into()),
        CudaAwareSetting::Auto => match env.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => match CudaAwareSetting::parse(v) {
                Ok(CudaAwareSetting::On) => decided(true, format!("{CUDA_AWARE_ENV}={v}")),
                Ok(CudaAwareSetting::Off) => decided(false, format!("{CUDA_AWARE_ENV}={v}")),
                _ => anyhow::bail!("{CUDA_AWARE_ENV}='{v}': expected 0 or 1"),
            },
            None => Ok(None),
        },
    }
}

/// Completes an undecided choice by asking the library (`query`, injected for tests).
pub fn finish_with_query(
    decided: Option<CudaAware>,
    query: impl FnOnce() -> Option<bool>,
) -> CudaAware {
    decided.unwrap_or_else(|| match query() {
        Some(yes) => CudaAware {
            enabled: yes,
            reason: format!("MPIX_Query_cuda_support() = {}", yes as i32),
            detected: true,
        },
        None => CudaAware {
            enabled: false,
            reason: "MPIX_Query_cuda_support not provided by this MPI".into(),
            detected: true,
        },
    })
}

/// The start-up log line for the decision.
pub fn describe(c: &CudaAware) -> String {
    if c.enabled && c.detected {
        format!(
            "CUDA-aware MPI: detected ({}); the engine stages device memory anyway unless system.cuda_aware = \"on\" (non-blocking collectives on GPU memory crash CUDA-aware Open MPI 4.1, ompi 9845)",
            c.reason
        )
    } else if c.enabled {
        format!(
            "CUDA-aware MPI: yes (device buffers passed to MPI directly; {})",
            c.reason
        )
    } else {
        format!(
            "CUDA-aware MPI: no (device buffers will be staged through host memory; {})",
            c.reason
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        s: CudaAwareSetting,
        env: Option<&str>,
        q: impl FnOnce() -> Option<bool>,
    ) -> anyhow::Result<CudaAware> {
        Ok(finish_with_query(decide_without_query(s, env)?, q))
    }

    #[test]
    fn precedence_setting_then_env_then_query() {
        let on = || Some(true);
        assert!(
            !resolve(CudaAwareSetting::Off, Some("1"), on)
                .unwrap()
                .enabled
        );
        assert!(
            resolve(CudaAwareSetting::On, Some("0"), || None)
                .unwrap()
                .enabled
        );
        assert!(
            !resolve(CudaAwareSetting::Auto, Some("0"), on)
                .unwrap()
                .enabled
        );
        assert!(
            resolve(CudaAwareSetting::Auto, Some("1"), || None)
                .unwrap()
                .enabled
        );
        assert!(resolve(CudaAwareSetting::Auto, None, on).unwrap().enabled);
        assert!(
            !resolve(CudaAwareSetting::Auto, None, || None)
                .unwrap()
                .enabled
        );
        assert!(resolve(CudaAwareSetting::Auto, Some("maybe"), || None).is_err());
        // Only the library's own answer counts as detected.
        assert!(resolve(CudaAwareSetting::Auto, None, on)
            .unwrap()
            .detected());
        assert!(!resolve(CudaAwareSetting::On, None, on).unwrap().detected());
        assert!(!resolve(CudaAwareSetting::Auto, Some("1"), on)
            .unwrap()
            .detected());
        assert!(CudaAwareSetting::parse("sometimes").is_err());
    }
}
