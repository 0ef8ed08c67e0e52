//! Misbehaves on request, for the host's failure tests; also reports what it gets when it tries to read a file or
//! open a connection.

use eddy::{Error, Event};

#[eddy::map]
fn faults(event: Event) -> Result<Event, Error> {
    match &*event.value {
        b"panic" => {
            eddy::log::info("about to panic on purpose");
            panic!("the record asked for a panic");
        }
        b"loop" => loop {
            std::hint::spin_loop();
        },
        // Waits without using CPU: only a stop or the call's waiting allowance ends it.
        b"sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(600));
            Ok(event.with_value("woke up"))
        }
        b"oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        // What a guest gets when it reaches for the host's files or network.
        b"fs" => {
            let outcome = match std::fs::read_to_string("/etc/hostname") {
                Ok(text) => format!("fs read {} bytes", text.len()),
                Err(e) => format!("fs denied: {e}"),
            };
            Ok(event.with_value(outcome))
        }
        b"net" => {
            let outcome = match std::net::TcpStream::connect("127.0.0.1:9") {
                Ok(_) => "net connected".to_string(),
                Err(e) => format!("net denied: {e}"),
            };
            Ok(event.with_value(outcome))
        }
        _ => Ok(event),
    }
}
