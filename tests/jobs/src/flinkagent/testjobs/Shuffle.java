package flinkagent.testjobs;

import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;

/**
 * Shuffle throughput: an unthrottled sequence turned into records of PAYLOAD_BYTES characters,
 * redistributed by key (so with parallelism p, (p-1)/p of the records cross to another subtask,
 * over the network when the subtasks run on different TaskManagers), counted in a keyed map and
 * discarded. Stateless apart from the source's position; the benchmark reads Flink's
 * numRecordsInPerSecond of the keyed operator.
 *
 * <p>Arguments: [PAYLOAD_BYTES (default 200)]
 */
public class Shuffle {
  public static void main(String[] args) throws Exception {
    int size = args.length > 0 ? Integer.parseInt(args[0]) : 200;
    String padding = "x".repeat(Math.max(0, size - 20));
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    DataGeneratorSource<Long> source =
        new DataGeneratorSource<>((GeneratorFunction<Long, Long>) n -> n, Long.MAX_VALUE, Types.LONG);
    env.fromSource(source, WatermarkStrategy.noWatermarks(), "sequence")
        .map(n -> n + ":" + padding)
        .returns(Types.STRING)
        .keyBy(s -> s.hashCode() & 1023, Types.INT)
        .map(String::length)
        .returns(Types.INT)
        .name("keyed")
        .sinkTo(new DiscardingSink<>());
    env.execute("shuffle");
  }
}
