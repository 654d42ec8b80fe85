//! The JIT thresholds the agent gives the JobManager and TaskManager JVMs.
//!
//! Why: half the CPU a Flink JVM spends starting is compilation, not Flink. A JobManager and a
//! TaskManager started together from their learned commands, class-data archives mapped, on
//! the 2-core test machine: when the JobManager's REST API answered (3.2 s), it had used 3.1
//! CPU seconds, 1.6 of them in its C1 and C2 compiler threads, and the TaskManager 2.8, 1.4 of
//! them compiling; the two share the cores, so both start late, and recovery waits for both.
//!
//! What: HotSpot's tiered compilation gives a method to C2, the optimizing compiler, once it
//! has run about 5,000 times (loops: 40,000 back branches). A start runs a great deal of code
//! that many times and then never again; a running job's code keeps running. Ten times those
//! thresholds leaves the start's code to C1 (compiled, with profiling) and still brings the
//! code that stays hot to C2, seconds later; nothing else about the JIT changes. Measured as
//! above, TaskManager registered 3.5–4.4 s → 2.7–2.9 s after exec (no C2 at all,
//! `-XX:TieredStopAtLevel=1`, made 2.2–2.7 s, but a running job never gets optimized code).
//!
//! The options go first on the JVM's command line: any of the same options in Flink's
//! `env.java.opts.*` come later and win.

/// The options, for a JobManager's and a TaskManager's launch (`supervisor.delay_c2`).
pub const OPTIONS: [&str; 4] = [
    "-XX:Tier4InvocationThreshold=50000",
    "-XX:Tier4MinInvocationThreshold=6000",
    "-XX:Tier4CompileThreshold=150000",
    "-XX:Tier4BackEdgeThreshold=400000",
];

/// True for the options of [`OPTIONS`]: they belong to each launch (the setting decides), not
/// to the learned JVM command.
pub fn is_jit_option(arg: &str) -> bool {
    OPTIONS.contains(&arg)
}
