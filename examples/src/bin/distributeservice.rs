//! DistributeService, the guide's non-streaming example: submit it to a cluster with
//! `gear app -jar distributeservice`; it runs one executor on every worker until it is killed.
//! Install a service everywhere with `distributeservice_client`.

fn main() -> std::process::ExitCode {
    match gearpump::run_application(gearpump_examples::distributeservice::application()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
