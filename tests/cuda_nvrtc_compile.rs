//! Every CUDA kernel compiles with a real NVRTC, in the default test run (no `cuda`
//! feature, no GPU, no CUDA installed), so a kernel that does not compile fails CI.
//!
//! It compiles `device::cuda_source::SOURCE` with the options and program name the CUDA
//! backend uses and checks that the PTX defines every kernel the backend loads, calling
//! NVRTC's C API from a library opened at run time. The library is, first found first:
//! - the machine's `libnvrtc.so.13` (LD_LIBRARY_PATH, the ldconfig cache), else
//! - the PyPI wheel [`WHEEL`] (NVIDIA's redistributable NVRTC), which the first run
//!   installs into the target directory with `python3 -m pip install --target` and later
//!   runs reuse.
//!
//! Where neither is possible (no python3 or pip, no network) it prints
//! "skipped: no NVRTC (reason)" and passes.
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use zerotrain::device::cuda_source::{NAMES, NVRTC_OPTIONS, PROGRAM_NAME, SOURCE};

/// NVRTC of CUDA 13.0, the CUDA version the backend's bindings target.
const WHEEL: &str = "nvidia-cuda-nvrtc==13.0.88";
/// Where the wheel puts the library, inside its install directory.
const WHEEL_LIB: &str = "nvidia/cu13/lib/libnvrtc.so.13";

type Prog = *mut c_void;
// NVRTC's C API, as declared in nvrtc.h; every call returns an `nvrtcResult` (0: success).
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int;
type ErrorStringFn = unsafe extern "C" fn(c_int) -> *const c_char;
type CStrs = *const *const c_char;
type CreateFn =
    unsafe extern "C" fn(*mut Prog, *const c_char, *const c_char, c_int, CStrs, CStrs) -> c_int;
type CompileFn = unsafe extern "C" fn(Prog, c_int, CStrs) -> c_int;
type SizeFn = unsafe extern "C" fn(Prog, *mut usize) -> c_int;
type GetFn = unsafe extern "C" fn(Prog, *mut c_char) -> c_int;
type DestroyFn = unsafe extern "C" fn(*mut Prog) -> c_int;

/// The NVRTC entry points this test calls, and where the library came from.
struct Nvrtc {
    origin: String,
    version: VersionFn,
    error_string: ErrorStringFn,
    create: CreateFn,
    compile: CompileFn,
    log_size: SizeFn,
    log: GetFn,
    ptx_size: SizeFn,
    ptx: GetFn,
    destroy: DestroyFn,
}

impl Nvrtc {
    /// Opens the library `name` (a path, or a name the dynamic loader searches) and
    /// resolves every entry point; the library stays loaded for the process.
    fn open(name: &str, origin: String) -> Result<Nvrtc, String> {
        let cname = CString::new(name).unwrap();
        // SAFETY: dlopen/dlerror with a valid C string; NVRTC's initialisers are benign.
        let h = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if h.is_null() {
            // SAFETY: dlerror returns a C string (or null) describing the last failure.
            let e = unsafe { libc::dlerror() };
            let why = if e.is_null() {
                "unknown error".into()
            } else {
                unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
            };
            return Err(format!("cannot open {name}: {why}"));
        }
        macro_rules! sym {
            ($name:literal as $t:ty) => {{
                let s = CString::new($name).unwrap();
                // SAFETY: `h` is a live handle; the symbol's type is its nvrtc.h signature.
                let p = unsafe { libc::dlsym(h, s.as_ptr()) };
                if p.is_null() {
                    return Err(format!("{name} has no {}", $name));
                }
                unsafe { std::mem::transmute::<*mut c_void, $t>(p) }
            }};
        }
        Ok(Nvrtc {
            origin,
            version: sym!("nvrtcVersion" as VersionFn),
            error_string: sym!("nvrtcGetErrorString" as ErrorStringFn),
            create: sym!("nvrtcCreateProgram" as CreateFn),
            compile: sym!("nvrtcCompileProgram" as CompileFn),
            log_size: sym!("nvrtcGetProgramLogSize" as SizeFn),
            log: sym!("nvrtcGetProgramLog" as GetFn),
            ptx_size: sym!("nvrtcGetPTXSize" as SizeFn),
            ptx: sym!("nvrtcGetPTX" as GetFn),
            destroy: sym!("nvrtcDestroyProgram" as DestroyFn),
        })
    }

    fn check(&self, what: &str, r: c_int) -> Result<(), String> {
        if r == 0 {
            return Ok(());
        }
        // SAFETY: NVRTC returns a static string for any result code.
        let msg = unsafe { CStr::from_ptr((self.error_string)(r)) };
        Err(format!("{what}: {}", msg.to_string_lossy()))
    }

    fn version(&self) -> String {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: two valid out-pointers.
        match self.check("nvrtcVersion", unsafe {
            (self.version)(&mut major, &mut minor)
        }) {
            Ok(()) => format!("{major}.{minor}"),
            Err(e) => e,
        }
    }

    /// The PTX of `src`, or NVRTC's error and compile log.
    fn compile(&self, src: &str, name: &str, opts: &[&str]) -> Result<String, String> {
        let (src, name) = (CString::new(src).unwrap(), CString::new(name).unwrap());
        let opts: Vec<CString> = opts.iter().map(|o| CString::new(*o).unwrap()).collect();
        let optp: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Prog = std::ptr::null_mut();
        // SAFETY: NUL-terminated strings that outlive the program; no headers.
        let r = unsafe {
            (self.create)(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        self.check("nvrtcCreateProgram", r)?;
        // SAFETY: `prog` is a live program; the option pointers are valid C strings.
        let r = unsafe { (self.compile)(prog, optp.len() as c_int, optp.as_ptr()) };
        let out = match self.check("nvrtcCompileProgram", r) {
            Ok(()) => self.read(prog, self.ptx_size, self.ptx),
            Err(e) => Err(format!(
                "{e}\n{}",
                self.read(prog, self.log_size, self.log)?
            )),
        };
        // SAFETY: destroys the program created above, once.
        unsafe { (self.destroy)(&mut prog) };
        out
    }

    /// A NUL-terminated string NVRTC holds for `prog` (its log or its PTX).
    fn read(&self, prog: Prog, size: SizeFn, get: GetFn) -> Result<String, String> {
        let mut n = 0usize;
        // SAFETY: `prog` is live; the buffer holds the size NVRTC reports.
        self.check("nvrtc size query", unsafe { size(prog, &mut n) })?;
        let mut buf = vec![0u8; n.max(1)];
        self.check("nvrtc read", unsafe { get(prog, buf.as_mut_ptr().cast()) })?;
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
    }
}

/// The NVRTC this test uses (see the module documentation), or why there is none.
fn nvrtc() -> Result<&'static Nvrtc, &'static str> {
    static LIB: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    LIB.get_or_init(|| {
        let system = match Nvrtc::open("libnvrtc.so.13", "the system's libnvrtc.so.13".into()) {
            Ok(lib) => return Ok(lib),
            Err(e) => e,
        };
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(WHEEL.replace("==", "-"));
        if !dir.join(WHEEL_LIB).exists() {
            install_wheel(&dir).map_err(|e| format!("{system}; and {e}"))?;
        }
        let lib = dir.join(WHEEL_LIB);
        preload_builtins(lib.parent().unwrap())?;
        Nvrtc::open(
            &lib.to_string_lossy(),
            format!("{WHEEL} in {}", dir.display()),
        )
    })
    .as_ref()
    .map_err(|e| e.as_str())
}

/// Loads the wheel's `libnvrtc-builtins.so.13.*` by path: libnvrtc opens it by name at
/// its first compile, and that name then resolves to the library already loaded (this
/// wheel's libnvrtc has no RPATH to find it beside itself).
fn preload_builtins(lib_dir: &Path) -> Result<(), String> {
    let found = std::fs::read_dir(lib_dir)
        .map_err(|e| format!("cannot list {}: {e}", lib_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with("libnvrtc-builtins.so.13")
        })
        .ok_or_else(|| format!("no libnvrtc-builtins.so.13.* in {}", lib_dir.display()))?;
    let path = CString::new(found.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: dlopen of a valid path; the handle is kept for the process.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        return Err(format!("cannot open {}", found.display()));
    }
    Ok(())
}

/// Installs [`WHEEL`] into `dir` with pip, through a private directory renamed into
/// place, so an interrupted or concurrent install never leaves a partial `dir`.
fn install_wheel(dir: &Path) -> Result<(), String> {
    let tmp = PathBuf::from(format!("{}.partial-{}", dir.display(), std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!("installing {WHEEL} into {} (once)", dir.display());
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "--no-deps", "--no-input"])
        .args([
            "--disable-pip-version-check",
            "--timeout",
            "30",
            "--retries",
            "1",
        ])
        .arg("--target")
        .arg(&tmp)
        .arg(WHEEL)
        .output()
        .map_err(|e| format!("cannot run python3 to install {WHEEL}: {e}"))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&tmp);
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(format!(
            "`python3 -m pip install {WHEEL}` failed (no pip or no network?): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    if std::fs::rename(&tmp, dir).is_err() {
        // another run installed it first
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

/// The NVRTC to use, or None after printing why the test skips.
fn nvrtc_or_skip() -> Option<&'static Nvrtc> {
    match nvrtc() {
        Ok(lib) => {
            eprintln!("NVRTC {} from {}", lib.version(), lib.origin);
            Some(lib)
        }
        Err(why) => {
            eprintln!("skipped: no NVRTC ({why})");
            None
        }
    }
}

#[test]
fn every_kernel_compiles_with_nvrtc() {
    let Some(lib) = nvrtc_or_skip() else { return };
    let t = std::time::Instant::now();
    let ptx = lib
        .compile(SOURCE, PROGRAM_NAME, NVRTC_OPTIONS)
        .unwrap_or_else(|e| panic!("NVRTC rejects the CUDA kernels: {e}"));
    eprintln!(
        "compiled in {:.1?}: {} bytes of PTX",
        t.elapsed(),
        ptx.len()
    );
    for name in NAMES {
        assert!(
            ptx.contains(&format!(".entry {name}(")),
            "kernel {name} is missing from the PTX"
        );
    }
}

/// The check above can fail: a kernel with a syntax error is reported with NVRTC's log.
#[test]
fn a_broken_kernel_fails_to_compile() {
    let Some(lib) = nvrtc_or_skip() else { return };
    let src = format!("{SOURCE}\nextern \"C\" __global__ void broken(float* x) {{ x[0] = ; }}\n");
    let e = lib
        .compile(&src, PROGRAM_NAME, NVRTC_OPTIONS)
        .expect_err("NVRTC must reject a syntax error");
    assert!(e.contains("error"), "the compile log names the error: {e}");
    assert!(e.contains(PROGRAM_NAME), "and the program: {e}");
}
