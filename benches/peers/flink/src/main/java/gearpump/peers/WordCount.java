package gearpump.peers;

import java.util.HashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.SourceReaderContext;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.util.Collector;

/**
 * The word count of gearpump_examples::words on Flink's DataStream API: lines of ten words drawn
 * with the same xorshift generator from word00000 ... word09999, a split that makes a String per
 * word, keyBy the word, and a running count per word in a HashMap. Object reuse is on (Flink's
 * fastest setting for this job). {@code WordCount [words] [parallelism]}; prints the time of the
 * job itself (the whole process is timed by the caller) and checks every word was counted.
 */
public final class WordCount {
  static final long WORDS_PER_LINE = 10;
  static final long VOCABULARY = 10_000;
  static final AtomicLong COUNTED = new AtomicLong();

  /** The same generator as the Rust programs', one per source reader. */
  static final class Lines implements GeneratorFunction<Long, String> {
    private long state;

    @Override
    public void open(SourceReaderContext context) {
      long task = context.getIndexOfSubtask();
      state = 0x2545F4914F6CDD1DL ^ ((task + 1) * 0x9E3779B97F4A7C15L);
    }

    private long nextWord() {
      long x = state;
      x ^= x << 13;
      x ^= x >>> 7;
      x ^= x << 17;
      state = x;
      return Long.remainderUnsigned(x, VOCABULARY);
    }

    @Override
    public String map(Long index) {
      StringBuilder line = new StringBuilder((int) WORDS_PER_LINE * 10);
      char[] digits = new char[5];
      for (int i = 0; i < WORDS_PER_LINE; i++) {
        if (i > 0) {
          line.append(' ');
        }
        long v = nextWord();
        for (int d = 4; d >= 0; d--) {
          digits[d] = (char) ('0' + (v % 10));
          v /= 10;
        }
        line.append("word").append(digits);
      }
      return line.toString();
    }
  }

  /** A running count per word, in a HashMap of the task's own. */
  static final class Count extends KeyedProcessFunction<String, String, Void> {
    private transient HashMap<String, Long> counts;

    @Override
    public void open(OpenContext context) {
      counts = new HashMap<>();
    }

    @Override
    public void processElement(String word, Context ctx, Collector<Void> out) {
      counts.merge(word, 1L, Long::sum);
    }

    @Override
    public void close() {
      long sum = 0;
      for (long c : counts.values()) {
        sum += c;
      }
      COUNTED.addAndGet(sum);
    }
  }

  public static void main(String[] args) throws Exception {
    long words = args.length > 0 ? Long.parseLong(args[0]) : 50_000_000L;
    int parallelism = args.length > 1 ? Integer.parseInt(args[1]) : 2;
    long lines = words / WORDS_PER_LINE / parallelism * parallelism;
    long expected = lines * WORDS_PER_LINE;

    StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
    env.setParallelism(parallelism);
    env.getConfig().enableObjectReuse();
    env.fromSource(new DataGeneratorSource<>(new Lines(), lines, Types.STRING), WatermarkStrategy.noWatermarks(), "lines")
        .flatMap((String line, Collector<String> out) -> {
          for (String word : line.split(" ")) {
            out.collect(word);
          }
        })
        .returns(Types.STRING)
        .keyBy(word -> word)
        .process(new Count())
        .returns(Types.VOID)
        .name("count");

    long started = System.nanoTime();
    env.execute("wordCountFlink");
    double secs = (System.nanoTime() - started) / 1e9;
    long counted = COUNTED.get();
    if (counted != expected) {
      throw new IllegalStateException(counted + " words counted of " + expected);
    }
    System.out.printf("engine=flink words=%d parallelism=%d job=%.2fs throughput=%.2fM words/s (job only)%n",
        expected, parallelism, secs, expected / secs / 1e6);
  }
}
