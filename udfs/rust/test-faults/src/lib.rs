//! Misbehaves on request, for the host's failure tests.

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
        b"oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        _ => Ok(event),
    }
}
