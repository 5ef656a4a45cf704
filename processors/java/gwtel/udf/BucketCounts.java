package gwtel.udf;

import java.util.HashMap;
import java.util.Map;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.ArrayData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.functions.AggregateFunction;

/**
 * Merges the sparse latency histograms of a window's flow records into one.
 *
 * <p>Arguments: one histogram per metric (five), each an ARRAY of ROW(bucket INT, count BIGINT) or NULL
 * (no samples). Result: MAP of {@code metric * KEY_STRIDE + bucket} to the summed count, metric being the
 * argument's position. A flow record enters the window as one row, not one row per bucket and metric: the
 * window operators' cost is per row.
 */
public final class BucketCounts extends AggregateFunction<Map<Integer, Long>, BucketCounts.Acc> {

    /** Buckets are below this; equal to processors.udf.KEY_STRIDE (tests/unit/test_udf.py checks both). */
    public static final int KEY_STRIDE = 1 << 16;

    /** Summed counts by {@code metric * KEY_STRIDE + bucket}. */
    public static final class Acc {
        public Map<Integer, Long> counts = new HashMap<>();
    }

    @Override
    public Acc createAccumulator() {
        return new Acc();
    }

    private static final String HIST = "ARRAY<ROW<b INT, c BIGINT>>";

    /** One histogram per metric, in the order of schemas.aggregate.METRICS (five). */
    public void accumulate(
            Acc acc,
            @DataTypeHint(value = HIST, bridgedTo = ArrayData.class) ArrayData h0,
            @DataTypeHint(value = HIST, bridgedTo = ArrayData.class) ArrayData h1,
            @DataTypeHint(value = HIST, bridgedTo = ArrayData.class) ArrayData h2,
            @DataTypeHint(value = HIST, bridgedTo = ArrayData.class) ArrayData h3,
            @DataTypeHint(value = HIST, bridgedTo = ArrayData.class) ArrayData h4) {
        add(acc, 0, h0);
        add(acc, 1, h1);
        add(acc, 2, h2);
        add(acc, 3, h3);
        add(acc, 4, h4);
    }

    private static void add(Acc acc, int metric, ArrayData hist) {
        if (hist == null) {
            return;
        }
        int base = metric * KEY_STRIDE;
        for (int i = 0; i < hist.size(); i++) {
            if (hist.isNullAt(i)) {
                continue;
            }
            RowData bin = hist.getRow(i, 2);
            if (bin.isNullAt(0) || bin.isNullAt(1)) {
                continue;
            }
            long n = bin.getLong(1);
            if (n != 0) {
                acc.counts.merge(base + bin.getInt(0), n, Long::sum);
            }
        }
    }

    public void merge(Acc acc, Iterable<Acc> others) {
        for (Acc other : others) {
            for (Map.Entry<Integer, Long> e : other.counts.entrySet()) {
                acc.counts.merge(e.getKey(), e.getValue(), Long::sum);
            }
        }
    }

    @Override
    public @DataTypeHint("MAP<INT, BIGINT>") Map<Integer, Long> getValue(Acc acc) {
        return new HashMap<>(acc.counts);
    }
}
