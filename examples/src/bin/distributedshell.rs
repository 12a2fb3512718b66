//! DistributedShell, the guide's non-streaming example: submit it to a cluster with
//! `gear app -jar distributedshell`; it runs one shell executor on every worker until it is
//! killed. Ask it with `distributedshell_client`.

fn main() -> std::process::ExitCode {
    match gearpump::run_application(gearpump_examples::distributedshell::application()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
