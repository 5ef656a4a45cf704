package gwtel.udf;

import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.functions.ScalarFunction;
import org.apache.flink.types.Row;

/**
 * Whether a latency histogram holds a bin no record may carry: a null bin, a null bucket or count, or one
 * outside its bounds. The bounds are arguments, passed by the SQL that schemas.checks generates from the same
 * table the loader's checks are generated from, so the two stages refuse the same bins.
 *
 * <p>Flink SQL has no function over an array's elements; a bin that the job's JSON format could not read
 * (not an object, a bucket beyond INT) reaches here as a null bin or element and is refused too.
 */
public final class BadBins extends ScalarFunction {

    public boolean eval(
            @DataTypeHint("ARRAY<ROW<b INT, c BIGINT>>") Row[] bins, long bLo, long bHi, long cLo, long cHi) {
        if (bins == null) {
            return false; // a missing list is empty, as the loader reads it
        }
        for (Row bin : bins) {
            if (bin == null) {
                return true;
            }
            Object b = bin.getField(0);
            Object c = bin.getField(1);
            if (b == null || c == null) {
                return true;
            }
            long bucket = ((Number) b).longValue();
            long count = ((Number) c).longValue();
            if (bucket < bLo || bucket > bHi || count < cLo || count > cHi) {
                return true;
            }
        }
        return false;
    }
}
