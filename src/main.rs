fn main() -> std::process::ExitCode {
    m_runtime::cli::main(m::app_info())
}
