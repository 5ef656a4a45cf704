package gwtel.udf;

import java.util.HashMap;
import java.util.Map;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.AggregateFunction;

/**
 * The number of distinct strings over all the arrays of a window (NULL arrays and elements are skipped).
 *
 * <p>A longer window's distinct remote hosts from a shorter one's rows: each row carries its window's
 * distinct addresses ({@link SideCounts}' {@code remotes}), and counts of distinct hosts do not add up.
 */
public final class DistinctCount extends AggregateFunction<Long, DistinctCount.Acc> {

    /** The strings seen so far (a map: the accumulator's type must be one Flink SQL can store). */
    public static final class Acc {
        public Map<String, Boolean> seen = new HashMap<>();
    }

    @Override
    public Acc createAccumulator() {
        return new Acc();
    }

    public void accumulate(Acc acc, @DataTypeHint("ARRAY<STRING>") String[] values) {
        if (values == null) {
            return;
        }
        for (String v : values) {
            if (v != null) {
                acc.seen.put(v, Boolean.TRUE);
            }
        }
    }

    public void merge(Acc acc, Iterable<Acc> others) {
        for (Acc o : others) {
            acc.seen.putAll(o.seen);
        }
    }

    @Override
    public Long getValue(Acc acc) {
        return (long) acc.seen.size();
    }
}
