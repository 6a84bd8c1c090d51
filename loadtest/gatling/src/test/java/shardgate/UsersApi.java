package shardgate;

import static io.gatling.javaapi.core.CoreDsl.*;
import static io.gatling.javaapi.http.HttpDsl.*;

import io.gatling.javaapi.core.Assertion;
import io.gatling.javaapi.core.ClosedInjectionStep;
import io.gatling.javaapi.http.HttpProtocolBuilder;
import io.gatling.javaapi.http.HttpRequestActionBuilder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicLong;

/**
 * What both simulations share: the target, the HTTP protocol, the test data, the users-API
 * requests (the same paths, methods, header and body field names as loadtest/k6/users-crud.js),
 * the load profiles and the assertions.
 *
 * <p>System properties (mvn gatling:test -Dname=value):
 *
 * <ul>
 *   <li>baseUrl: the shardgate to load, default http://127.0.0.1:8080
 *   <li>profile: smoke (default), load, stress, spike, soak or 10k
 *   <li>users, duration (seconds): override the profile's (peak) concurrent users and how long
 *       they are held
 *   <li>p99Ms: the bound on the 99th percentile response time, default 100 (as k6's P99_MS)
 *   <li>maxFailedPercent: the bound on failed requests in percent, default 1 (as k6's FAIL_RATE)
 * </ul>
 *
 * <p>server/tests/gatling_contract.rs reads this file: it checks every request below against
 * server/src/openapi/openapi.json and replays the scenarios against a real shardgate. Keep each
 * request in the shape it understands: {@code static final HttpRequestActionBuilder NAME =
 * http("label").method("literal path").body(StringBody("literal JSON")).check(...);}
 */
final class UsersApi {
  private UsersApi() {}

  static final String BASE_URL =
      System.getProperty("baseUrl", "http://127.0.0.1:8080").replaceAll("/+$", "");
  static final String PROFILE = System.getProperty("profile", "smoke");
  static final int P99_MS = Integer.getInteger("p99Ms", 100);
  static final double MAX_FAILED_PERCENT =
      Double.parseDouble(System.getProperty("maxFailedPercent", "1"));

  /**
   * Every request carries Content-Type: application/json, as k6's JSON_HEADERS (lib.js) does on
   * every call. No warm-up request: Gatling's default warm-up goes to https://gatling.io.
   */
  static final HttpProtocolBuilder PROTOCOL =
      http.baseUrl(BASE_URL)
          .contentTypeHeader("application/json")
          .userAgentHeader("shardgate-gatling/1.0")
          .disableWarmUp();

  // ---- test data -------------------------------------------------------------------------

  /** This run's tag: base36 start time plus 4 random base36 chars, so runs never collide. */
  static final String RUN =
      Long.toString(System.currentTimeMillis(), 36)
          + Integer.toString(1_679_616 + ThreadLocalRandom.current().nextInt(1_679_616), 36)
              .substring(1);

  private static final AtomicLong SEQ = new AtomicLong();

  /**
   * An endless, thread-safe feeder of unique users: firstName, lastName, email, and newFirstName
   * (what the update writes). Values are unique per request and per run.
   */
  static Iterator<Map<String, Object>> newUsers() {
    return new Iterator<Map<String, Object>>() {
      @Override
      public boolean hasNext() {
        return true;
      }

      @Override
      public Map<String, Object> next() {
        String n = RUN + "x" + SEQ.incrementAndGet();
        Map<String, Object> m = new HashMap<>();
        m.put("firstName", "First" + n);
        m.put("lastName", "Last" + n);
        m.put("email", "gatling-" + n + "@example.com");
        m.put("newFirstName", "Upd" + n);
        return m;
      }
    };
  }

  // ---- requests (names as k6's `name` tags, so the two reports line up) ------------------

  /** POST /api/v1/users/: 201 and the new user's id (saved as userId). */
  static final HttpRequestActionBuilder CREATE =
      http("POST /api/v1/users/")
          .post("/api/v1/users/")
          .body(
              StringBody(
                  "{\"first_name\":\"#{firstName}\",\"last_name\":\"#{lastName}\",\"email\":\"#{email}\"}"))
          .check(
              status().is(201),
              jsonPath("$.id").saveAs("userId"),
              jsonPath("$.first_name").isEL("#{firstName}"),
              jsonPath("$.email").isEL("#{email}"));

  /** GET /api/v1/users/:id right after the create: 200, the same id (read your own write). */
  static final HttpRequestActionBuilder READ =
      http("GET /api/v1/users/:id")
          .get("/api/v1/users/#{userId}")
          .check(
              status().is(200),
              jsonPath("$.id").isEL("#{userId}"),
              jsonPath("$.last_name").isEL("#{lastName}"));

  /** PATCH /api/v1/users/:id with a new first_name (k6's update): 200, the new value back. */
  static final HttpRequestActionBuilder UPDATE =
      http("PATCH /api/v1/users/:id")
          .patch("/api/v1/users/#{userId}")
          .body(StringBody("{\"first_name\":\"#{newFirstName}\"}"))
          .check(
              status().is(200),
              jsonPath("$.id").isEL("#{userId}"),
              jsonPath("$.first_name").isEL("#{newFirstName}"));

  /** GET /api/v1/users/?limit=20: 200, a bare JSON array of at most 20 users. */
  static final HttpRequestActionBuilder LIST =
      http("GET /api/v1/users/?limit")
          .get("/api/v1/users/?limit=20")
          .check(
              status().is(200),
              jmesPath("type(@)").is("array"),
              jmesPath("length(@)").ofInt().lte(20));

  /** DELETE /api/v1/users/:id: 204. */
  static final HttpRequestActionBuilder DELETE =
      http("DELETE /api/v1/users/:id").delete("/api/v1/users/#{userId}").check(status().is(204));

  /**
   * GET /api/v1/users/:id of the user just deleted: 404 USER_NOT_FOUND. consistency=strong reads
   * the primary: an eventual read may come from a replica that has not applied the delete yet
   * ( allows a bounded replica lag), which would be a false failure under load.
   */
  static final HttpRequestActionBuilder READ_DELETED =
      http("GET /api/v1/users/:id (deleted)")
          .get("/api/v1/users/#{userId}?consistency=strong")
          .check(status().is(404), jsonPath("$.code").is("USER_NOT_FOUND"));

  // ---- profiles and assertions --------------------------------------------------------------

  /**
   * The closed-model injection of the selected profile (as k6's constant VUs: each virtual user
   * runs the scenario once and is replaced at once while the step lasts).
   */
  static ClosedInjectionStep[] injection() {
    return profile().steps.toArray(new ClosedInjectionStep[0]);
  }

  /** The longest a run may take: the profile plus a minute for the last users to finish. */
  static Duration maxDuration() {
    return Duration.ofSeconds(profile().seconds + 60);
  }

  /** Failed requests (a failed check fails its request) and p99 over every request. */
  static Assertion[] assertions() {
    return new Assertion[] {
      global().failedRequests().percent().lt(MAX_FAILED_PERCENT),
      global().responseTime().percentile(99.0).lt(P99_MS)
    };
  }

  private static Steps profile() {
    switch (PROFILE) {
      case "smoke":
        return new Steps().constant(users(10), duration(30));
      case "load":
        return new Steps().constant(users(100), duration(60));
      case "stress":
        return new Steps().constant(users(500), duration(120));
      case "soak":
        return new Steps().constant(users(100), duration(300));
      case "spike":
        {
          // 20 s at 10 users, a jump to the peak within 2 s, held, back to 10, 20 s of recovery.
          int peak = users(1000);
          return new Steps()
              .constant(10, 20)
              .ramp(10, peak, 2)
              .constant(peak, duration(30))
              .ramp(peak, 10, 2)
              .constant(10, 20);
        }
      case "10k":
        {
          // The Messenger Clone API's headline: 10,000 concurrent users, ramped up over 30 s, then held.
          int peak = users(10_000);
          return new Steps().ramp(0, peak, 30).constant(peak, duration(60));
        }
      default:
        throw new IllegalArgumentException(
            "unknown profile=" + PROFILE + "; use one of smoke, load, stress, spike, soak, 10k");
    }
  }

  /** Closed-model steps and their total length in seconds. */
  private static final class Steps {
    final List<ClosedInjectionStep> steps = new ArrayList<>();
    long seconds;

    Steps constant(int users, long during) {
      steps.add(constantConcurrentUsers(users).during(Duration.ofSeconds(during)));
      seconds += during;
      return this;
    }

    Steps ramp(int from, int to, long during) {
      steps.add(rampConcurrentUsers(from).to(to).during(Duration.ofSeconds(during)));
      seconds += during;
      return this;
    }
  }

  /** -Dusers, else the profile's number. */
  private static int users(int profileDefault) {
    int users = Integer.getInteger("users", profileDefault);
    if (users < 1) {
      throw new IllegalArgumentException("users=" + users + ": use 1 or more");
    }
    return users;
  }

  /** -Dduration (seconds), else the profile's. */
  private static long duration(long profileDefault) {
    long seconds = Long.getLong("duration", profileDefault);
    if (seconds < 1) {
      throw new IllegalArgumentException("duration=" + seconds + ": use 1 or more (seconds)");
    }
    return seconds;
  }
}
