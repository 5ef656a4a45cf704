package gwtel.udf;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.annotation.FunctionHint;
import org.apache.flink.table.functions.AggregateFunction;
import org.apache.flink.types.Row;

/**
 * The bandwidth counters of a window's flow records, per direction of travel.
 *
 * <p>A flow gives its initiator's counters to its own direction and, when the responder sent packets, the
 * responder's counters to the opposite direction (both passed in, so the mapping stays in one place, the
 * SQL of processors.aggregate.bandwidth). Distinct remote hosts are counted per direction, over the sides
 * that carried packets, by a {@link HostSketch}: exact up to its limit, estimated beyond it, in bounded
 * memory. Result: one ROW per direction that received a side.
 *
 * <p>A flow record enters the window as one row: the window operators' cost is per row, and Flink's own
 * COUNT DISTINCT keeps its set in keyed state, one state access per side. Here the sketch is part of the
 * accumulator, read and written once per key when the window operator flushes its buffer.
 */
@FunctionHint(output = @DataTypeHint(SideCounts.RESULT))
public final class SideCounts extends AggregateFunction<Row[], SideCounts.Acc> {

    /** Counters and distinct remote hosts, by direction. */
    public static final class Acc {
        public Map<String, Long> bytes = new HashMap<>();
        public Map<String, Long> packets = new HashMap<>();
        public Map<String, Long> retrans = new HashMap<>();
        public Map<String, Long> flows = new HashMap<>();
        public Map<String, Long> ended = new HashMap<>();
        public Map<String, HostSketch> hosts = new HashMap<>();
    }

    static final String RESULT =
            "ARRAY<ROW<`direction` STRING, `bytes` BIGINT, `packets` BIGINT, `retrans` BIGINT, `flows` BIGINT, "
                    + "`flows_ended` BIGINT, `remote_hosts` BIGINT>>";

    @Override
    public Acc createAccumulator() {
        return new Acc();
    }

    /**
     * One flow record. {@code remote} is the remote address (NULL: hosts are not counted); {@code ended} is
     * 1 when the flow ended with this record, else 0.
     */
    public void accumulate(
            Acc acc,
            String direction,
            String opposite,
            Long bytesFwd,
            Long packetsFwd,
            Long retransFwd,
            Long bytesRev,
            Long packetsRev,
            Long retransRev,
            Long ended,
            String remote) {
        side(acc, direction, bytesFwd, packetsFwd, retransFwd, 1L, ended, remote);
        if (packetsRev != null && packetsRev > 0) {
            side(acc, opposite, bytesRev, packetsRev, retransRev, 0L, 0L, remote);
        }
    }

    private static void side(
            Acc acc, String dir, Long bytes, Long packets, Long retrans, long flows, Long ended, String remote) {
        acc.bytes.merge(dir, orZero(bytes), Long::sum);
        acc.packets.merge(dir, orZero(packets), Long::sum);
        acc.retrans.merge(dir, orZero(retrans), Long::sum);
        acc.flows.merge(dir, flows, Long::sum);
        acc.ended.merge(dir, orZero(ended), Long::sum);
        if (remote != null && packets != null && packets > 0) {
            acc.hosts.computeIfAbsent(dir, d -> new HostSketch()).add(remote);
        }
    }

    private static long orZero(Long v) {
        return v == null ? 0L : v;
    }

    public void merge(Acc acc, Iterable<Acc> others) {
        for (Acc o : others) {
            o.bytes.forEach((k, v) -> acc.bytes.merge(k, v, Long::sum));
            o.packets.forEach((k, v) -> acc.packets.merge(k, v, Long::sum));
            o.retrans.forEach((k, v) -> acc.retrans.merge(k, v, Long::sum));
            o.flows.forEach((k, v) -> acc.flows.merge(k, v, Long::sum));
            o.ended.forEach((k, v) -> acc.ended.merge(k, v, Long::sum));
            o.hosts.forEach((k, v) -> acc.hosts.computeIfAbsent(k, d -> new HostSketch()).merge(v));
        }
    }

    @Override
    public Row[] getValue(Acc acc) {
        List<Row> out = new ArrayList<>(acc.bytes.size());
        for (Map.Entry<String, Long> e : acc.bytes.entrySet()) {
            String dir = e.getKey();
            out.add(
                    Row.of(
                            dir,
                            e.getValue(),
                            acc.packets.get(dir),
                            acc.retrans.get(dir),
                            acc.flows.get(dir),
                            acc.ended.get(dir),
                            acc.hosts.containsKey(dir) ? acc.hosts.get(dir).estimate() : 0L));
        }
        return out.toArray(new Row[0]);
    }
}
