package flinkagent.testjobs;

import java.io.FileWriter;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.util.Collector;

/**
 * A small stateful job whose state is observable from outside: a rate-limited sequence 0, 1,
 * 2, ... is keyed by n % 4 and a per-key counter (keyed state) is incremented for every element.
 * Each element appends "key count n" to the file named by the first argument. After a restore
 * from a checkpoint the counts and the sequence continue where the checkpoint left them,
 * instead of starting again at 1 and 0.
 *
 * Arguments: OUTPUT_FILE [ELEMENTS_PER_SECOND (default 20)]
 */
public class KeyedCounter {
  public static void main(String[] args) throws Exception {
    if (args.length < 1) {
      throw new IllegalArgumentException("usage: KeyedCounter OUTPUT_FILE [ELEMENTS_PER_SECOND]");
    }
    String output = args[0];
    double rate = args.length > 1 ? Double.parseDouble(args[1]) : 20.0;
    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    DataGeneratorSource<Long> source =
        new DataGeneratorSource<>(
            (GeneratorFunction<Long, Long>) n -> n,
            Long.MAX_VALUE,
            RateLimiterStrategy.perSecond(rate),
            Types.LONG);
    env.fromSource(source, WatermarkStrategy.noWatermarks(), "sequence")
        .keyBy(n -> n % 4, Types.LONG)
        .process(new Count(output))
        .returns(Types.STRING)
        .sinkTo(new DiscardingSink<>());
    env.execute("keyed-counter");
  }

  /** Counts elements per key in keyed state and appends each new count to the output file. */
  static class Count extends KeyedProcessFunction<Long, Long, String> {
    private final String output;
    private transient ValueState<Long> count;

    Count(String output) {
      this.output = output;
    }

    @Override
    public void open(OpenContext context) {
      count = getRuntimeContext().getState(new ValueStateDescriptor<>("count", Types.LONG));
    }

    @Override
    public void processElement(Long n, Context ctx, Collector<String> out) throws Exception {
      Long previous = count.value();
      long next = (previous == null ? 0 : previous) + 1;
      count.update(next);
      String line = ctx.getCurrentKey() + " " + next + " " + n + "\n";
      try (FileWriter writer = new FileWriter(output, true)) {
        writer.write(line);
      }
      out.collect(line);
    }
  }
}
