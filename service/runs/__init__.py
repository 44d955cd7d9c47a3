"""How an alert becomes a run and how a run goes (intake, engine, gates, policy, audit records), pure."""
