//! Links the embedded flite TTS engine (Debian `flite1-dev`) and its built-in voices.

fn main() {
    for lib in [
        "flite_cmu_us_slt",
        "flite_cmu_us_rms",
        "flite_cmu_us_awb",
        "flite_usenglish",
        "flite_cmulex",
        "flite",
    ] {
        println!("cargo:rustc-link-lib={lib}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
