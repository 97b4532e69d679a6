-- Why a verdict changed, as reason codes and parameters ({"criterion", "code", "params"}), so pages,
-- exports and alerts render it in the reader's language; detail keeps the English text. Rows written
-- before this column read as no reasons, and are shown from detail.
ALTER TABLE judge_transitions ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
