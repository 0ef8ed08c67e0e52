//! The `eddy` command.

fn main() -> std::process::ExitCode {
    eddy_server::cli::main()
}
