//! Non-streaming applications on the embedded cluster: their AppMasters and executors run as
//! tasks of this process, placed as asked, and clients reach them through the cluster.

use gearpump_cluster::application::{
    AppMaster, AppMasterContext, Application, ClientError, Executor, ExecutorContext, Placement,
};
use gearpump_cluster::{AppStatus, ClusterConfig, EmbeddedCluster};
use gearpump_core::{AppId, WorkerId};
use std::time::Duration;

struct Echo;

impl Executor for Echo {
    type Task = String;
    type Output = String;
    fn on_task(&mut self, ctx: &ExecutorContext, task: String) -> Result<String, String> {
        if task == "fail" {
            return Err(format!("executor {} refuses", ctx.executor_id));
        }
        if task == "panic" {
            panic!("asked to panic");
        }
        if task == "slow" {
            std::thread::sleep(Duration::from_secs(2));
        }
        Ok(format!("{task} from worker {}", ctx.worker))
    }
}

struct EchoMaster(Vec<Placement>);

impl AppMaster for EchoMaster {
    const KIND: &'static str = "Echo";
    type Executor = Echo;
    type Request = String;
    type Response = Vec<Result<String, String>>;

    fn placement(&self) -> Vec<Placement> {
        self.0.clone()
    }

    fn on_request(&mut self, ctx: &mut AppMasterContext<Echo>, request: String) -> Result<Self::Response, String> {
        let answers = match request.as_str() {
            "slow" => ctx.ask_all_within(&request, Duration::from_millis(200)),
            _ => ctx.ask_all(&request),
        };
        Ok(answers.into_iter().map(|(_, r)| r).collect())
    }
}

struct Other;

impl AppMaster for Other {
    const KIND: &'static str = "Other";
    type Executor = Echo;
    type Request = String;
    type Response = String;
    fn on_request(&mut self, _: &mut AppMasterContext<Echo>, r: String) -> Result<String, String> {
        Ok(r)
    }
}

fn echo(name: &str, placement: Vec<Placement>) -> Application<EchoMaster> {
    Application::new(name, move |_| EchoMaster(placement.clone()), |_| Echo)
}

/// Asks until every wanted executor answers (they register a moment after the application
/// is active... or the application is active only once they have: either way, wait).
fn ask_until(cluster: &EmbeddedCluster, id: AppId, n: usize) -> Vec<Result<String, String>> {
    let client = cluster.client();
    client.wait_active(id, Duration::from_secs(60)).unwrap();
    let mut app = client.app_client::<EchoMaster>(id).unwrap();
    for _ in 0..600 {
        let answers = app.ask(&"hello".to_string()).unwrap();
        if answers.len() == n {
            return answers;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("never {n} executors");
}

#[test]
fn executors_are_placed_as_asked_and_answer_clients() {
    let cluster = EmbeddedCluster::start(ClusterConfig { workers: 3, slots_per_worker: 4, ..ClusterConfig::default() });
    let client = cluster.client();

    // One on each worker.
    let each = client.submit_application(echo("each", vec![Placement::EachWorker])).unwrap();
    let mut answers = ask_until(&cluster, each, 3);
    answers.sort();
    let expected: Vec<Result<String, String>> = (1..=3).map(|w| Ok(format!("hello from worker {w}"))).collect();
    assert_eq!(answers, expected);
    assert_eq!(client.status(each).unwrap().kind, "Echo");

    // Two anywhere and one on worker 2.
    let placed = echo("placed", vec![Placement::Anywhere(2), Placement::OnWorker(WorkerId(2))]);
    let placed = client.submit_application(placed).unwrap();
    let answers = ask_until(&cluster, placed, 3);
    assert!(answers.contains(&Ok("hello from worker 2".into())), "{answers:?}");

    // An executor's error reaches the client as that executor's answer.
    let mut app = client.app_client::<EchoMaster>(each).unwrap();
    let answers = app.ask(&"fail".to_string()).unwrap();
    assert_eq!(answers.len(), 3);
    assert!(answers.iter().all(|a| a.as_ref().is_err_and(|e| e.contains("refuses"))), "{answers:?}");
    // A panic in user code fails that task alone; the executors answer on.
    let answers = app.ask(&"panic".to_string()).unwrap();
    assert!(answers.iter().all(|a| a.as_ref().is_err_and(|e| e.contains("panicked: asked to panic"))), "{answers:?}");
    assert_eq!(app.ask(&"again".to_string()).unwrap().len(), 3);
    // Executors that take longer than the AppMaster waits answer with an error saying so; they
    // answer the next task once done with the slow one.
    let answers = app.ask(&"slow".to_string()).unwrap();
    assert!(
        answers.iter().all(|a| a.as_ref().is_err_and(|e| e.contains("did not answer within 200ms"))),
        "{answers:?}"
    );
    let answers = app.ask(&"again".to_string()).unwrap();
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|a| a.starts_with("again from worker"))), "{answers:?}");

    // Clients of the wrong kind, of a streaming application's id, of no application.
    assert!(matches!(client.app_client::<Other>(each), Err(ClientError::WrongKind { kind, .. }) if kind == "Echo"));
    assert!(matches!(client.app_client::<EchoMaster>(AppId(99)), Err(ClientError::Refused(_))));

    // Killed, it ends as terminated, its slots free again, and no client reaches it.
    let used = |c: &EmbeddedCluster| c.client().workers().iter().map(|w| w.used).sum::<u32>();
    assert_eq!(used(&cluster), 1 + 3 + 1 + 3);
    client.kill(each).unwrap();
    assert_eq!(client.wait(each, Duration::from_secs(60)).unwrap().status, AppStatus::Terminated);
    assert_eq!(used(&cluster), 1 + 3);
    let refused = client.app_client::<EchoMaster>(each).err().unwrap().to_string();
    assert!(refused.contains("is not running; it is terminated"), "{refused}");
    cluster.shutdown();
}
