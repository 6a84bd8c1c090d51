package shardgate;

import static io.gatling.javaapi.core.CoreDsl.*;

import io.gatling.javaapi.core.ScenarioBuilder;
import io.gatling.javaapi.core.Simulation;

/**
 * The Messenger Clone API's create-user load: every virtual user creates one user with unique first_name,
 * last_name and email (POST /api/v1/users/) and checks 201 and the new id.
 *
 * <pre>
 * cd loadtest/gatling
 * mvn gatling:test -Dgatling.simulationClass=shardgate.CreateUserSimulation
 * mvn gatling:test -Dgatling.simulationClass=shardgate.CreateUserSimulation -Dprofile=load
 * </pre>
 *
 * Profiles and the other properties (baseUrl, users, duration, p99Ms, maxFailedPercent): see
 * {@link UsersApi}.
 */
public class CreateUserSimulation extends Simulation {

  ScenarioBuilder createUser =
      scenario("create user").feed(UsersApi.newUsers()).exec(UsersApi.CREATE);

  {
    setUp(createUser.injectClosed(UsersApi.injection()))
        .protocols(UsersApi.PROTOCOL)
        .assertions(UsersApi.assertions())
        .maxDuration(UsersApi.maxDuration());
  }
}
