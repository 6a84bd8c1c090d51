package shardgate;

import static io.gatling.javaapi.core.CoreDsl.*;

import io.gatling.javaapi.core.ScenarioBuilder;
import io.gatling.javaapi.core.Simulation;

/**
 * The Messenger Clone API's user load tests: every virtual user runs one CRUD pass over its own new user.
 *
 * <ol>
 *   <li>POST /api/v1/users/ (201, saves the id)
 *   <li>GET /api/v1/users/:id (200, the same id)
 *   <li>PATCH /api/v1/users/:id with a new first_name (200, the new first_name)
 *   <li>GET /api/v1/users/?limit=20 (200, a JSON array of at most 20)
 *   <li>DELETE /api/v1/users/:id (204)
 *   <li>GET /api/v1/users/:id?consistency=strong (404 USER_NOT_FOUND)
 * </ol>
 *
 * <pre>
 * cd loadtest/gatling
 * mvn gatling:test -Dgatling.simulationClass=shardgate.UserSimulation                  # smoke
 * mvn gatling:test -Dgatling.simulationClass=shardgate.UserSimulation -Dprofile=10k
 * </pre>
 *
 * Profiles (smoke, load, stress, spike, soak, 10k) and the other properties (baseUrl, users,
 * duration, p99Ms, maxFailedPercent): see {@link UsersApi}.
 */
public class UserSimulation extends Simulation {

  ScenarioBuilder crud =
      scenario("users CRUD")
          .feed(UsersApi.newUsers())
          .exec(UsersApi.CREATE)
          // No user, nothing to read, update or delete: one failed create stays one failure.
          .exitHereIfFailed()
          .exec(UsersApi.READ)
          .exec(UsersApi.UPDATE)
          .exec(UsersApi.LIST)
          .exec(UsersApi.DELETE)
          .exec(UsersApi.READ_DELETED);

  {
    setUp(crud.injectClosed(UsersApi.injection()))
        .protocols(UsersApi.PROTOCOL)
        .assertions(UsersApi.assertions())
        .maxDuration(UsersApi.maxDuration());
  }
}
