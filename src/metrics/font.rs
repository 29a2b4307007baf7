//! A TrueType font for plot text. Plotters' `ab_glyph` backend reads no system font
//! configuration (no fontconfig or freetype needed), so a font file is found here and
//! registered once per process as the "sans-serif" family.
use anyhow::{anyhow, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Environment variable naming a .ttf/.otf file to use instead of searching.
pub const FONT_ENV: &str = "ZEROTRAIN_FONT";

/// Well-known locations of a plain sans font (Debian/Ubuntu, Fedora, Arch, macOS).
const CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Directories searched (recursively, in sorted order) when no candidate exists.
const FONT_DIRS: &[&str] = &["/usr/share/fonts", "/usr/local/share/fonts"];

/// Registers a font for plot text, once; later calls return the first call's outcome.
pub fn ensure_font() -> Result<()> {
    static DONE: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    match DONE.get_or_init(register) {
        Ok(_) => Ok(()),
        Err(e) => Err(anyhow!("{e}")),
    }
}

fn register() -> std::result::Result<PathBuf, String> {
    if let Ok(p) = std::env::var(FONT_ENV) {
        let p = PathBuf::from(p);
        return try_register(&p)
            .map(|_| p.clone())
            .map_err(|e| format!("{FONT_ENV}={}: {e}", p.display()));
    }
    let mut found: Vec<PathBuf> = CANDIDATES
        .iter()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect();
    for d in FONT_DIRS {
        collect_fonts(Path::new(d), &mut found, 0);
    }
    for p in found {
        if try_register(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(format!(
        "no TrueType font found for plot labels (searched {} and {}); install one \
         (Debian/Ubuntu: apt-get install fonts-dejavu-core) or set {FONT_ENV}=/path/to/font.ttf",
        CANDIDATES[0],
        FONT_DIRS.join(", ")
    ))
}

/// Appends .ttf/.otf files under `dir` in sorted order (depth-limited).
fn collect_fonts(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && depth < 6 {
            collect_fonts(&p, out, depth + 1);
        } else if matches!(
            p.extension().and_then(|e| e.to_str()),
            Some("ttf" | "otf" | "TTF" | "OTF")
        ) {
            out.push(p);
        }
    }
}

fn try_register(p: &Path) -> std::result::Result<(), String> {
    let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
    // Plotters keeps a &'static reference; the font lives for the process (once).
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes)
        .map_err(|_| "not a usable TrueType/OpenType font".to_string())
}
