//! DistributeService, the guide's non-streaming example: submit it to a cluster with
//! `gear app -jar distributeservice`; it runs one executor on every worker until it is killed. Ask it
//! with `distributeservice_client`.

fn main() -> std::process::ExitCode {
    gearpump_examples::main_with(|| Ok(gearpump::run_application(gearpump_examples::distributeservice::application())?))
}
