//! Which CUDA libraries this process actually loaded. cudarc tries several names per
//! library and falls back silently (to CUDA 12's cuBLAS and NVRTC, for example), so after
//! loading we ask the dynamic loader which of the names is resident and say so.
use std::ffi::CString;

/// (library, the names to look for, most specific first). NCCL is listed by its real
/// name, `libnccl.so.2`, for when a transport loads it.
const LIBRARIES: [(&str, &[&str]); 4] = [
    ("driver", &["libcuda.so.1", "libcuda.so"]),
    (
        "cuBLAS",
        &["libcublas.so.13", "libcublas.so.12", "libcublas.so"],
    ),
    (
        "NVRTC",
        &["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"],
    ),
    ("NCCL", &["libnccl.so.2", "libnccl.so"]),
];

/// The first of `names` already loaded in this process.
fn resident(names: &[&'static str]) -> Option<&'static str> {
    names.iter().copied().find(|name| {
        let Ok(c) = CString::new(*name) else {
            return false;
        };
        // SAFETY: RTLD_NOLOAD only looks the library up; it loads nothing. The handle
        // returned for a resident library is released again at once.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_LAZY | libc::RTLD_NOLOAD) };
        if h.is_null() {
            return false;
        }
        unsafe { libc::dlclose(h) };
        true
    })
}

/// One line for the start-up log: each library and the name it was loaded as, and a
/// warning where that is not the CUDA 13 name the bindings were written for. NCCL shows
/// only once loaded (by the NCCL transport, after set-up; it then names itself in the
/// transport line).
pub fn describe_loaded() -> String {
    LIBRARIES
        .iter()
        .filter_map(|(what, names)| {
            let name = resident(names)?;
            Some(if name.ends_with(".so.12") {
                format!("{what} {name} (CUDA 12's: the bindings expect CUDA 13)")
            } else if name.ends_with(".so") && !matches!(*what, "driver" | "NCCL") {
                format!("{what} {name} (unversioned: the bindings expect CUDA 13)")
            } else {
                format!("{what} {name}")
            })
        })
        .collect::<Vec<_>>()
        .join(", ")
}
