use crate::helpers::local_scaler;

async fn plan(args: &[&str]) -> std::process::Output {
    local_scaler().arg("plan").args(args).output().await.unwrap()
}

#[tokio::test]
async fn plan_prints_one_json_object_with_the_contract_keys() {
    let output = plan(&["--queue-length", "10", "--max-replicas", "3", "--running", "1"]).await;
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(plan["max_scale"], 3);
    assert_eq!(plan["effective_max_scale"], 2);
    assert_eq!(plan["scale_to"], 10);
    assert_eq!(plan["jobs_to_create"], 2);
    assert!(plan["reason"].is_string());
}

#[tokio::test]
async fn plan_reads_its_flags_from_the_environment_too() {
    let output = local_scaler()
        .arg("plan")
        .env("LOCAL_SCALER_QUEUE_LENGTH", "7")
        .env("LOCAL_SCALER_STRATEGY", "eager")
        .env("LOCAL_SCALER_MAX_REPLICAS", "5")
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (plan["jobs_to_create"].as_i64(), plan["scale_to"].as_i64()),
        (Some(5), Some(5))
    );
    assert_eq!(plan["strategy"], "eager");
}

#[tokio::test]
async fn plan_rejects_impossible_input_with_status_2() {
    let output = plan(&["--queue-length", "1", "--running", "1", "--pending", "2"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let output = plan(&["--queue-length", "1", "--strategy", "greedy"]).await;
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
