//! Usage errors (exit code 2), and connection and login errors (exit code 1, clear message).
use std::net::TcpListener;

use rtc_test_homeserver::{HomeserverConfig, TestHomeserver};

use crate::support::{run, text, token_login};

#[tokio::test]
async fn usage_errors_exit_with_2_and_say_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "Usage"),
        (&["dance"], "unrecognized subcommand"),
        (&["join"], "--homeserver <URL>"),
        (
            &[
                "watch",
                "--homeserver",
                "ftp://example.org",
                "--user",
                "@a:b",
                "--password",
                "x",
            ],
            "must start with http:// or https://",
        ),
        (
            &[
                "watch",
                "--homeserver",
                "http://localhost",
                "--user",
                "@a:b",
            ],
            "--password",
        ),
        (
            &[
                "watch",
                "--homeserver",
                "http://localhost",
                "--user",
                "@a:b",
                "--password",
                "x",
                "--access-token",
                "t",
            ],
            "cannot be used with",
        ),
        (
            &[
                "join",
                "--homeserver",
                "http://localhost",
                "--user",
                "@a:b",
                "--password",
                "x",
                "no-sigil",
            ],
            "not a room ID",
        ),
        (
            &[
                "join",
                "--homeserver",
                "http://localhost",
                "--user",
                "@a:b",
                "--password",
                "x",
                "!room:localhost",
                "--slot",
                "m.call",
            ],
            "{application}#{name}",
        ),
        (
            &[
                "join",
                "--homeserver",
                "http://localhost",
                "--user",
                "@a:b",
                "--password",
                "x",
                "!room:localhost",
                "--sticky-ms",
                "7200000",
            ],
            "7200000 is not in 1..=3600000",
        ),
        (
            &[
                "join",
                "--homeserver",
                "http://localhost",
                "--user",
                "@a:b",
                "--password",
                "x",
                "!room:localhost",
                "--delay-ms",
                "0",
            ],
            "--delay-ms",
        ),
        (&["ingest"], "FILE.jsonl"),
    ];
    for (args, expected) in cases {
        let output = run(*args).await;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_exits_with_1_and_names_it() {
    // A port that was free a moment ago: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let output = run([
        "watch",
        "--homeserver",
        &url,
        "--user",
        "@a:localhost",
        "--password",
        "x",
    ])
    .await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("error: cannot reach the homeserver at {url}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_missing_file_exits_with_1() {
    let output = run(["ingest", "/nonexistent/workload.jsonl"]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open /nonexistent/workload.jsonl"),
        "{stderr}"
    );
}

#[tokio::test]
async fn wrong_credentials_exit_with_1_and_say_so() {
    let server = TestHomeserver::start().await.expect("synapse starts");
    let user = server.register_user("cli-login").await.expect("user");

    let wrong_password = run([
        "watch",
        "--homeserver",
        server.base_url(),
        "--user",
        &user.user_id,
        "--password",
        "wrong",
    ])
    .await;
    let stderr = text(&wrong_password.stderr);
    assert_eq!(wrong_password.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: logging in as {} on {} failed",
            user.user_id,
            server.base_url()
        )),
        "{stderr}"
    );

    let mut args = token_login(&server, &user);
    let token = args.iter().position(|arg| arg == "--access-token").unwrap() + 1;
    args[token] = "syt_not_a_token".into();
    args.insert(0, "watch".into());
    let wrong_token = run(&args).await;
    let stderr = text(&wrong_token.stderr);
    assert_eq!(wrong_token.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("refused the access token"), "{stderr}");

    // The right password logs in: the command gets as far as checking the room.
    let join_unknown_room = [
        "join".to_owned(),
        "!nowhere:localhost".to_owned(),
        "--homeserver".to_owned(),
        server.base_url().to_owned(),
        "--user".to_owned(),
        user.localpart.clone(),
        "--password".to_owned(),
        user.password.clone(),
    ];
    let output = run(&join_unknown_room).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("is not joined to !nowhere:localhost"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_server_without_sticky_events_is_named_and_delayed_events_are_not_required() {
    let config = HomeserverConfig::default()
        .with_sticky_events(false)
        .with_delayed_events(false);
    let server = TestHomeserver::start_with(config)
        .await
        .expect("synapse starts");
    let user = server.register_user("cli-features").await.expect("user");

    let mut args = vec!["join".to_owned(), "!room:localhost".to_owned()];
    args.extend(token_login(&server, &user));
    let output = run(&args).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("lacks sticky events (MSC4354)"), "{stderr}");
    // `join` does without delayed events (then with no dead-man switch, see
    // no_delayed_events.rs): they are not named as missing.
    assert!(!stderr.contains("delayed events"), "{stderr}");
}
