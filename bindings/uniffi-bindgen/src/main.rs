//! `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings of a built uniffi library
//! (library mode). Kept in its own crate so that building it never rebuilds the library with
//! another feature set; see `bindings/README.md` and `scripts/bindings/generate.sh`.

fn main() {
    uniffi::uniffi_bindgen_main();
}
