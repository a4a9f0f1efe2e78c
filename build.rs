//! Reads doctypes/ through m-codegen and writes the generated code into OUT_DIR.
fn main() {
    m_codegen::app_build::build_app();
}
